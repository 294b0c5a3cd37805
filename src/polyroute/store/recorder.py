"""The recorder: the gateway's only writer to the store, journaled and off the request path.

``submit`` never blocks and never raises: it fits the record's values to the schema,
encodes them as one line and appends that line to the write-ahead journal
(:mod:`polyroute.store.journal`) — one ``write`` system call, before the response ends.
A writer process (:mod:`polyroute.store.writer`) moves the journal into the database, so
the event loop never encodes a batch, binds a parameter or waits on the database, and a
backlog lives in the page cache rather than in the gateway's heap. What the database has
not got when the gateway dies (``kill -9`` included) is in the journal, and the next
writer stores it: nothing is queued in memory, so nothing is lost with the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from polyroute.errors import ConfigError
from polyroute.routing.base import Decision
from polyroute.store.db import Store
from polyroute.store.journal import (
    DEFAULT_SEGMENT_BYTES,
    Journal,
    default_journal_dir,
    journal_bytes,
)
from polyroute.store.rows import ATTEMPT_COLUMNS, REQUEST_COLUMNS, encode_json, encode_line
from polyroute.store.writer import JournalWriter

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
    #: Its stream broke after it started and the next attempt continued it (migration 0004).
    rescued: bool = False
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
    #: The W3C trace id the request belongs to (32 hex), when known (migration 0004).
    otel_trace_id: str | None = None
    #: The gateway span's id (16 hex), when polyroute made one.
    otel_span_id: str | None = None
    #: The caller's OpenTelemetry context the span continues (tracing on); not stored.
    trace_parent: Any = None
    #: What an online router needs back with feedback (e.g. the prompt embedding); not stored.
    route_context: Any = None
    #: Whether the gateway has recorded the request already (it is recorded once); not stored.
    finished: bool = False


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


_DECISION = REQUEST_COLUMNS.index("decision")
_BODY = REQUEST_COLUMNS.index("request_body")
# One C call reads every column's attribute (the JSON columns are replaced after).
_REQUEST_VALUES = operator.attrgetter(*REQUEST_COLUMNS)
_ATTEMPT_VALUES = operator.attrgetter(*(c for c in ATTEMPT_COLUMNS if c != "request_id"))
_ATTEMPT_ID = ATTEMPT_COLUMNS.index("request_id")


def record_values(record: RequestRecord) -> tuple[list[Any], list[list[Any]]]:
    """The ``requests`` values and ``attempts`` values of a record, in column order."""
    values = list(_REQUEST_VALUES(record))
    decision, body = values[_DECISION], values[_BODY]
    values[_DECISION] = (
        encode_json(decision_data(decision), secrets=True) if decision is not None else None
    )
    values[_BODY] = encode_json(body) if body is not None else None  # redacted
    attempts = []
    for attempt in record.attempts:
        row = list(_ATTEMPT_VALUES(attempt))
        row.insert(_ATTEMPT_ID, record.id)
        attempts.append(row)
    return values, attempts


def trace_line(record: RequestRecord) -> bytes:
    """The journal line of a record (values fitted to the schema)."""
    values, attempts = record_values(record)
    return encode_line(values, attempts)


def _in_memory(url: str) -> bool:
    parsed = sa.make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


@dataclass(slots=True)
class RecorderStats:
    """What ``/metrics`` and ``/health`` show of the recorder."""

    #: Records appended to the journal by this process.
    journaled: int
    #: Of those, records the database has (as the writer last reported).
    written: int
    #: Records journaled and not yet in the database: the backlog.
    queue_depth: int
    #: Records that could not even be journaled (the journal's disk failed): lost, counted.
    dropped: int
    #: Rows the database refused, kept in the quarantine file with the reason.
    quarantined: int
    #: Bytes in the journal's segments (not yet deleted by the writer).
    journal_bytes: int
    #: Records of earlier processes the writer stored from the journal (replayed).
    replayed: int
    #: Whether a writer process is running now.
    writer_alive: bool
    #: The writer's last database error, if its last try failed.
    last_error: str | None


class Recorder:
    """Journals records and keeps a writer process storing them. One per gateway process."""

    def __init__(
        self,
        store: Store,
        *,
        journal_dir: Path | None = None,
        batch_size: int = 2000,
        flush_interval_s: float = 0.5,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        stop_timeout_s: float = 60.0,
    ) -> None:
        self.store = store
        # An in-memory database lives in this process only: no other process can write it,
        # so its journal is stored by a writer on a thread here (tests and experiments).
        self.in_process = _in_memory(store.url)
        if journal_dir is None and self.in_process:
            journal_dir = Path(tempfile.mkdtemp(prefix="polyroute-journal-"))
        self.journal_dir = journal_dir or default_journal_dir(store.url)
        self.journal = Journal(self.journal_dir, segment_bytes=segment_bytes)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.stop_timeout_s = stop_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer_stats: dict[str, Any] = {}
        self._flushes: dict[str, asyncio.Future[None]] = {}
        self._flush_seq = 0
        self._closing = False
        self._local: JournalWriter | None = None
        self._local_lock = threading.Lock()  # one drain at a time: the loop's or a flush's
        # Records of this process stored by writers before the current one (see _replace).
        self._own_base = 0

    @property
    def dropped(self) -> int:
        return self.journal.failed

    @property
    def written(self) -> int:
        return self._own_base + int(self._writer_stats.get("own_written", 0))

    def stats(self) -> RecorderStats:
        w = self._writer_stats
        own = self._own_base + int(w.get("own_written", 0))
        return RecorderStats(
            journaled=self.journal.appended,
            written=own,
            queue_depth=max(0, self.journal.appended - own),
            dropped=self.journal.failed,
            quarantined=int(w.get("quarantined", 0)),
            journal_bytes=journal_bytes(self.journal_dir),
            replayed=int(w.get("written", 0)) - own,
            writer_alive=self._local is not None
            or (self._process is not None and self._process.returncode is None),
            last_error=w.get("last_error"),
        )

    async def start(self) -> None:
        """Open the journal and start the writer (which first stores what is left from before)."""
        self._closing = False
        try:
            self.journal.open()
        except OSError as e:
            raise ConfigError(
                f"store.journal_dir {str(self.journal_dir)!r} cannot be written ({e}); "
                f"point it at a writable local directory"
            ) from None
        if self.in_process:
            self._local = JournalWriter(
                self.store, self.journal_dir, owner=self.journal.owner, batch_size=self.batch_size
            )
            self._reader = asyncio.create_task(self._run_local(), name="polyroute-recorder")
            return
        await self._spawn()

    def _local_drain(self, seconds: float) -> None:
        with self._local_lock:
            if self._local is not None:
                self._local.drain(time.monotonic() + seconds)
                self._writer_stats = self._local.stats()

    async def _run_local(self) -> None:
        while not self._closing:
            await asyncio.to_thread(self._local_drain, self.flush_interval_s)
            await asyncio.sleep(self.flush_interval_s)

    async def _spawn(self) -> None:
        self._writer_stats = {}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",  # not -m: the package imports the module already
            "from polyroute.store.writer import main; main()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        settings = {
            # On a pipe, not on the command line: the URL may hold a password.
            "database_url": self.store.url,
            "journal_dir": str(self.journal_dir),
            "owner": self.journal.owner,
            "batch_size": self.batch_size,
            "interval_s": self.flush_interval_s,
            "drain_s": self.stop_timeout_s,
        }
        assert process.stdin is not None
        process.stdin.write(orjson.dumps(settings) + b"\n")
        self._process = process
        self._reader = asyncio.create_task(self._read(process), name="polyroute-recorder")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            try:
                report = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(report, dict):
                continue
            self._writer_stats = report
            flushed = report.get("flushed")
            done = self._flushes.pop(str(flushed), None) if flushed is not None else None
            if done is not None and not done.done():
                done.set_result(None)
        await process.wait()
        for waiting in self._flushes.values():
            if not waiting.done():
                waiting.set_result(None)
        self._flushes.clear()
        if not self._closing:
            # The writer died under a running gateway: the journal keeps the records; a new
            # writer takes them up.
            log.warning("trace writer exited (%s); starting a new one", process.returncode)
            await asyncio.sleep(1.0)
            if not self._closing:
                await self._replace()

    async def _replace(self) -> None:
        # The new writer counts every line of this process's segments still on disk as it
        # stores them, stored before or not: what went before them is the old writer's.
        remaining = await asyncio.to_thread(self._own_lines_on_disk)
        self._own_base = self.journal.appended - remaining
        await self._spawn()

    def _own_lines_on_disk(self) -> int:
        lines = 0
        for path in self.journal_dir.glob(f"{self.journal.owner}-*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                lines += path.read_bytes().count(b"\n")
        return lines

    def submit(self, record: RequestRecord) -> None:
        """Journal one finished request (never raises; a journal that fails is counted)."""
        try:
            line = trace_line(record)
        except Exception:  # a bug in encoding must not cost the response
            log.exception("could not encode trace %s", record.id)
            self.journal.failed += 1
            return
        if not self.journal.append(line) and self.journal.failed % 1000 == 1:
            log.error(
                "trace journal %s cannot be written: %d traces lost",
                self.journal_dir,
                self.journal.failed,
            )

    async def flush(self, timeout: float = 60.0) -> None:
        """Wait until everything journaled so far is in the database (tests use it)."""
        if self._local is not None:
            await asyncio.to_thread(self._local_drain, timeout)
            return
        process = self._process
        if process is None or process.returncode is not None or process.stdin is None:
            return
        self._flush_seq += 1
        key = str(self._flush_seq)
        done = asyncio.get_running_loop().create_future()
        self._flushes[key] = done
        process.stdin.write(f"flush {key}\n".encode())
        await asyncio.wait_for(done, timeout)

    async def aclose(self) -> None:
        """Seal the journal, let the writer store the rest, then stop it.

        A record submitted later goes to a new segment, stored by the next start's writer.
        """
        process, self._process = self._process, None
        self._closing = True
        self.journal.close()
        if self._local is not None:
            if self._reader is not None:
                await self._reader
                self._reader = None
            await asyncio.to_thread(self._local_drain, self.stop_timeout_s)
            self._local.close()
            self._local = None
            return
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            process.stdin.write(b"stop\n")
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout_s + 5)
            except TimeoutError:
                log.warning("trace writer did not finish in time; the journal keeps the rest")
                process.kill()
                await process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None
