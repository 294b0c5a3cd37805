"""The recorder: the gateway's only writer to the store, batched and off the request path.

``submit`` never blocks and never raises: it puts a record on an in-memory queue. A
background task writes batches in a worker thread, and ``aclose`` flushes what is left.
Turning a record into rows (redacting the body, encoding JSON) happens in that worker
thread too, so the request path only fills in a dataclass.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from polyroute.routing.base import Decision
from polyroute.store.db import Store
from polyroute.store.redact import redact

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AttemptRecord:
    """One upstream try of a request: the first model, then each fallback (migration 0002)."""

    n: int
    started_at: datetime
    model: str
    provider: str
    upstream_model: str | None = None
    status: int = 200
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None
    cost_status: str | None = None
    error: str | None = None
    #: ``time.perf_counter()`` when the attempt started (for its latency); not stored.
    t0: float = 0.0


@dataclass(slots=True)
class RequestRecord:
    """One request as it is stored: a trace (see migrations 0001 and 0002)."""

    id: str
    created_at: datetime
    requested_model: str
    stream: bool
    status: int = 200
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    router: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None
    cost_status: str | None = None
    error: str | None = None
    #: The router's decision, when a router chose the model.
    decision: Decision | None = None
    #: The request body as received (redacted when written); None when text is not stored.
    request_body: dict[str, Any] | None = None
    #: The answer's text; None when text is not stored or there was no answer.
    response_text: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    #: What an online router needs back with feedback (e.g. the prompt embedding); not stored.
    route_context: Any = None


_REQUEST_COLUMNS = (
    "id", "created_at", "requested_model", "stream", "status", "model", "provider",
    "upstream_model", "router", "input_tokens", "output_tokens", "cached_tokens",
    "latency_ms", "ttft_ms", "cost_usd", "cost_status", "error", "response_text",
)  # fmt: skip
_ATTEMPT_COLUMNS = (
    "n", "started_at", "model", "provider", "upstream_model", "status", "input_tokens",
    "output_tokens", "latency_ms", "ttft_ms", "cost_usd", "cost_status", "error",
)  # fmt: skip


def decision_data(decision: Decision) -> dict[str, Any]:
    """A decision as the JSON object stored in ``requests.decision``."""
    data = {
        "router": decision.router,
        "model": decision.model,
        "reason": decision.reason,
        "scores": decision.scores,
        "costs": decision.costs,
        "fallbacks": list(decision.fallbacks),
    }
    if decision.assumed:  # capabilities taken on trust (see polyroute.routing.constraints)
        data["assumed"] = decision.assumed
    return data


def _json(value: Any) -> str:
    # Non-finite scores (an untried arm's +inf) become null, as JSON has no infinity.
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()


def trace_rows(record: RequestRecord) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``requests`` row and the ``attempts`` rows of one record (worker-thread work)."""
    row = {c: getattr(record, c) for c in _REQUEST_COLUMNS}
    row["decision"] = _json(decision_data(record.decision)) if record.decision else None
    row["request_body"] = (
        _json(redact(record.request_body)) if record.request_body is not None else None
    )
    attempts = [
        {"request_id": record.id, **{c: getattr(a, c) for c in _ATTEMPT_COLUMNS}}
        for a in record.attempts
    ]
    return row, attempts


class Recorder:
    """Batches records into the store. One instance per gateway process."""

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 200,
        flush_interval_s: float = 0.5,
        max_queue: int = 100_000,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        # None is the stop sentinel, so that a shutdown writes every record queued before it.
        self._queue: asyncio.Queue[RequestRecord | None] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="polyroute-recorder")

    def submit(self, record: RequestRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            # The store has fallen far behind; losing a log row beats stalling traffic.
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("recorder queue full: %d records dropped so far", self.dropped)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = loop.time() + self.flush_interval_s
            while len(batch) < self.batch_size:
                # What is queued already is taken without a timer: wait_for costs the
                # event loop a task and a timer per record, which shows at high load.
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except TimeoutError:
                        break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._write(batch)

    async def _write(self, batch: list[RequestRecord]) -> None:
        try:
            await asyncio.to_thread(self._write_sync, batch)
            self.written += len(batch)
        except Exception:
            log.exception("recorder could not write %d records", len(batch))

    def _write_sync(self, batch: list[RequestRecord]) -> None:
        requests: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        for record in batch:
            row, tries = trace_rows(record)
            requests.append(row)
            attempts.extend(tries)
        self.store.insert_traces(requests, attempts)  # one transaction per batch

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (tests and shutdown use it)."""
        await self.aclose()
        self.start()

    async def aclose(self) -> None:
        """Write what is queued, then stop. Records submitted later are kept for a restart."""
        if self._task is None:
            return
        await self._queue.put(None)  # the sentinel: everything before it gets written
        await self._task
        self._task = None
