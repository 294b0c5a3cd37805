"""The recorder: the gateway's only writer to the store, batched and off the request path.

``submit`` never blocks and never raises: it puts a record on an in-memory queue. A
background task writes batches in a worker thread, and ``aclose`` flushes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from datetime import datetime

from polyroute.store.db import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RequestRecord:
    """One request as it is stored (see migration 0001)."""

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
            await asyncio.to_thread(self.store.insert_requests, [asdict(r) for r in batch])
            self.written += len(batch)
        except Exception:
            log.exception("recorder could not write %d records", len(batch))

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
