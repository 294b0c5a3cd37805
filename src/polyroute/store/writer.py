"""The writer: a process of its own that moves the journal into the database.

Writing traces in a thread of the gateway cost the event loop its GIL: each batch's
decoding and parameter binding held it for up to the 5 ms switch interval at a time, and a
backlog of queued records made the collector's full passes ~100 ms long. In a process of
its own the writer shares nothing with the event loop but the journal's files.

It reads every sealed or growing segment oldest first, stores the lines in transactions of
up to ``batch_size`` rows (a row stored already is skipped, so what a crash left behind is
replayed without duplicates) and deletes a segment once it is sealed and stored. A batch
the database refuses is split row by row; a row it refuses is written, with the reason, to
the quarantine file beside the segments. When the database itself is down (a lost
connection, a locked SQLite file) nothing is quarantined: the writer waits and tries again,
and the journal keeps the rows meanwhile.

The gateway talks to it over its standard input and output, one JSON object a line: it
sends the settings first, then ``flush <n>`` (answered, once everything journaled before it
is stored, with ``"flushed": n``) and ``stop``. After each batch it reports its counts. The
end of its input (the gateway exited, however) ends it too, after a last drain.

Several gateways may share a journal (``polyroute serve --workers N``: one writer each). A
writer stores its own gateway's segments, and claims each other gateway's by a lock on the
file ``<owner>.claim``, which that gateway's writer holds for as long as it runs. A claim
it gets means that writer is gone; if no segment of that owner is locked either, its
gateway is gone too (a gateway always holds the lock on the segment it appends to), and
the writer adopts every segment of that owner: a worker killed with ``kill -9``, writer
and all, loses nothing. A replacement writer for a gateway that lives on waits for its
claim. Two writers that ever read the same lines store them once: a trace stored already is
skipped (``ON CONFLICT DO NOTHING``), and a segment is deleted only by a writer that holds
its lock and has stored all of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from polyroute.store.db import Store
from polyroute.store.journal import QUARANTINE, SUFFIX
from polyroute.store.rows import decode_line

#: The most bytes read from one segment in one step.
_READ_BYTES = 8 * 1024 * 1024
#: The most segments held open at once (a backlog of hours is thousands of segments).
_OPEN_SEGMENTS = 16
#: Waits between tries while the database is down, growing to the last.
_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
#: Seconds between tries to claim another gateway's segments.
_ADOPT_RETRY_S = 2.0
CLAIM = ".claim"
#: Errors that say the database cannot take writes now, not that a row is bad.
_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)


class DatabaseDown(Exception):
    """The database refused a write for a reason no row is to blame for."""


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int
    own: bool
    offset: int = 0  # bytes stored (or quarantined)
    sealed: bool = False


def segment_owner(name: str) -> str:
    """The owner token of a segment's name (``<owner>-<seq>.jsonl``)."""
    return name.rpartition("-")[0]


def _try_lock(path: Path) -> int | None:
    """A descriptor of ``path`` (created if need be) holding its lock; None if it is held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class JournalWriter:
    """Stores a journal's segments in the database (blocking: it is the writer process's work).

    ``owner`` is the segment-name prefix of the gateway this writer serves: lines from its
    segments are counted in ``own_written``, so that the gateway can tell its backlog. With
    an owner, other owners' segments are stored only once adopted (see the module's
    docstring); without one (tests, tools), every segment is this writer's.
    """

    def __init__(
        self, store: Store, directory: Path, *, owner: str = "", batch_size: int = 2000
    ) -> None:
        self.store = store
        self.directory = directory
        self.owner = owner
        self.batch_size = batch_size
        self.segments: dict[str, _Segment] = {}
        self.written = 0
        self.own_written = 0
        self.quarantined = 0
        self.split_batches = 0
        self.db_errors = 0
        self.last_error: str | None = None
        self.deleted_segments = 0
        #: Owners whose segments this writer adopted: owner → its claim's descriptor.
        self.adopted: dict[str, int] = {}
        self.adopted_segments = 0
        self._retry_at: dict[str, float] = {}
        self._present: set[str] = set()  # owners with segments at the last scan

    def stats(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "own_written": self.own_written,
            "quarantined": self.quarantined,
            "split_batches": self.split_batches,
            "db_errors": self.db_errors,
            "last_error": self.last_error,
            "adopted_segments": self.adopted_segments,
        }

    def _scan(self) -> list[_Segment]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(SUFFIX))
        except FileNotFoundError:
            names = []
        self._present = {segment_owner(n) for n in names}
        for name in names:
            if len(self.segments) >= _OPEN_SEGMENTS:
                break  # a long backlog: the oldest first, without a descriptor for each
            if name in self.segments:
                continue
            owner = segment_owner(name)
            if self.owner and owner != self.owner and owner not in self.adopted:
                if not self._adopt(owner):
                    continue
                if name in self.segments:
                    continue
            path = self.directory / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            own = bool(self.owner) and owner == self.owner
            self.segments[name] = _Segment(path, fd, own)
        return [self.segments[n] for n in sorted(self.segments)]

    def segments_of(self, owner: str) -> list[str]:
        """The names of ``owner``'s segments on disk now."""
        try:
            return sorted(
                n for n in os.listdir(self.directory)
                if n.endswith(SUFFIX) and segment_owner(n) == owner
            )  # fmt: skip
        except FileNotFoundError:
            return []

    def _adopt(self, owner: str) -> bool:
        """Take another gateway's segments if its writer and the gateway itself are gone."""
        now = time.monotonic()
        if self._retry_at.get(owner, 0.0) > now:
            return False
        self._retry_at[owner] = now + _ADOPT_RETRY_S
        claim = _try_lock(self.directory / f"{owner}{CLAIM}")
        if claim is None:
            return False  # its writer runs
        names = self.segments_of(owner)
        locked: dict[str, int] = {}
        alive = False
        for name in names:
            try:
                fd = os.open(self.directory / name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            locked[name] = fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alive = True  # its gateway appends to this one: a new writer will come
                break
        # A gateway that rotated meanwhile has a new segment (locked): it is alive.
        if alive or self.segments_of(owner) != names:
            for fd in locked.values():
                os.close(fd)
            os.close(claim)
            return False
        self.adopted[owner] = claim
        for name, fd in locked.items():
            if len(self.segments) >= _OPEN_SEGMENTS:
                os.close(fd)  # opened again by a later scan
                continue
            self.segments[name] = _Segment(self.directory / name, fd, False, sealed=True)
        return True

    def _release_adopted(self) -> None:
        """Give up the claims of adopted owners whose segments are all stored."""
        for owner, fd in list(self.adopted.items()):
            if owner in self._present or any(segment_owner(n) == owner for n in self.segments):
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{owner}{CLAIM}").unlink()  # unlinked while locked
            os.close(fd)
            del self.adopted[owner]

    def step(self) -> int:
        """Store up to ``batch_size`` new lines, oldest segment first; how many were taken.

        Raises :class:`DatabaseDown` (having stored nothing) when the database is down.
        """
        taken: list[tuple[_Segment, int, list[bytes]]] = []
        room = self.batch_size
        for seg in self._scan():
            if room <= 0:
                break
            if not seg.sealed:
                # Locked before reading: what is read after the lock is all there will be.
                try:
                    fcntl.flock(seg.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    seg.sealed = True
                except BlockingIOError:
                    pass
            size = os.fstat(seg.fd).st_size
            if seg.offset < size:
                data = os.pread(seg.fd, min(size - seg.offset, _READ_BYTES), seg.offset)
                lines = data.split(b"\n")
                rest = lines.pop()  # after the last newline: a line still being written
                if len(lines) > room:
                    lines, rest = lines[:room], b""
                end = seg.offset + sum(len(line) + 1 for line in lines)
                if not lines and seg.sealed and rest and seg.offset + len(rest) == size:
                    # A sealed segment ending without a newline: a write cut by a crash.
                    self._quarantine(rest, "incomplete line at the end of a segment")
                    seg.offset = size
                    continue
                if lines:
                    taken.append((seg, end, lines))
                    room -= len(lines)
        if taken:
            self._store([line for _, _, lines in taken for line in lines if line])
            for seg, end, lines in taken:
                seg.offset = end
                self.written += len(lines)
                if seg.own:
                    self.own_written += len(lines)
        self._delete_finished()
        return sum(len(lines) for _, _, lines in taken)

    def _delete_finished(self) -> None:
        for name, seg in list(self.segments.items()):
            if seg.sealed and seg.offset >= os.fstat(seg.fd).st_size:
                with contextlib.suppress(FileNotFoundError):
                    seg.path.unlink()
                os.close(seg.fd)
                del self.segments[name]
                self.deleted_segments += 1
                if self.owner and segment_owner(name) != self.owner:
                    self.adopted_segments += 1
        self._release_adopted()

    def _store(self, lines: list[bytes]) -> None:
        items: list[tuple[bytes, list[Any], list[list[Any]]]] = []
        for line in lines:
            try:
                request, attempts = decode_line(line)
            except (ValueError, TypeError, IndexError) as e:
                self._quarantine(line, f"undecodable line: {e}")
                continue
            items.append((line, request, attempts))
        try:
            self.store.insert_trace_values(
                [r for _, r, _ in items], [a for _, _, tries in items for a in tries]
            )
            self.last_error = None
            return
        except _DOWN as e:
            raise self._down(e) from None
        except Exception as e:
            self.last_error = f"{type(e).__name__}: {e}"[:500]
        # One row spoiled the batch: store the others one by one, keep the bad ones aside.
        self.split_batches += 1
        for line, request, attempts in items:
            try:
                self.store.insert_trace_values([request], attempts)
            except _DOWN as e:
                raise self._down(e) from None
            except Exception as e:
                self._quarantine(line, f"{type(e).__name__}: {e}")

    def _down(self, error: Exception) -> DatabaseDown:
        self.db_errors += 1
        self.last_error = f"{type(error).__name__}: {error}"[:500]
        return DatabaseDown(self.last_error)

    def _quarantine(self, line: bytes, reason: str) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "reason": reason[:2000],
            "line": line.decode("utf-8", "replace"),
        }
        with open(self.directory / QUARANTINE, "ab") as f:
            f.write(orjson.dumps(entry) + b"\n")
        self.quarantined += 1

    def drain(self, deadline: float) -> bool:
        """Step until nothing is left to store (True) or the deadline passes (False).

        The database being down ends it early (False): the rows stay in the journal.
        """
        while time.monotonic() < deadline:
            deleted = self.deleted_segments
            try:
                if self.step() == 0 and self.deleted_segments == deleted:
                    return True
            except DatabaseDown:
                return False
        return False

    def close(self) -> None:
        for seg in self.segments.values():
            os.close(seg.fd)
        self.segments.clear()
        for fd in self.adopted.values():
            os.close(fd)  # the files stay: their segments are not all stored
        self.adopted.clear()


# ----------------------------------------------------------------------- the process itself


class _Commands:
    """Lines from standard input, read without blocking past a timeout."""

    def __init__(self) -> None:
        self.buffer = b""
        self.eof = False

    def next(self, timeout: float) -> str | None:
        """The next command, "" for the end of input, None when none came in time."""
        while b"\n" not in self.buffer and not self.eof:
            ready, _, _ = select.select([0], [], [], max(0.0, timeout))
            if not ready:
                return None
            chunk = os.read(0, 65536)
            if not chunk:
                self.eof = True
            self.buffer += chunk
            timeout = 0
        if b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            return line.decode().strip() or None
        return ""


def _report(writer: JournalWriter, **extra: Any) -> None:
    sys.stdout.write(orjson.dumps({**writer.stats(), **extra}).decode() + "\n")
    sys.stdout.flush()


def _claim(directory: Path, owner: str, commands: _Commands) -> int | None:
    """Take this gateway's claim on its segments, waiting while an older writer (or one
    that adopted them) holds it; None if told to stop meanwhile."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (f"{owner}{CLAIM}" if owner else "writer.lock")
    while True:
        fd = _try_lock(path)
        if fd is not None:
            return fd
        if commands.next(0.05) in ("", "stop"):
            return None


def main() -> None:
    """The writer process (started by the recorder), its settings on the first input line."""
    # A Ctrl-C or a service manager's SIGTERM reaches the whole process group: stopping is
    # the gateway's to decide (it says stop, or its exit ends our input), after its last
    # requests are journaled.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    commands = _Commands()
    first = None
    while first is None:
        first = commands.next(60.0)
    if not first:
        return
    settings = orjson.loads(first)
    directory = Path(settings["journal_dir"])
    interval = float(settings.get("interval_s", 0.5))
    drain_s = float(settings.get("drain_s", 60.0))
    owner = str(settings.get("owner", ""))
    claim = _claim(directory, owner, commands)
    if claim is None:
        return
    store = Store(settings["database_url"])
    writer = JournalWriter(
        store, directory, owner=owner, batch_size=int(settings.get("batch_size", 2000))
    )
    _report(writer, ready=True)
    backoff = 0
    try:
        while True:
            wait = interval
            try:
                taken = writer.step()
                backoff = 0
                if taken:
                    _report(writer)
                # A full batch means a backlog: go on at once. Otherwise wait, so that a
                # trickle of requests makes one transaction an interval, not one each.
                if taken >= writer.batch_size:
                    wait = 0.0
            except DatabaseDown:
                wait = _BACKOFF_S[min(backoff, len(_BACKOFF_S) - 1)]
                backoff += 1
                _report(writer)
            command = commands.next(wait)
            if command is None:
                continue
            if command.startswith("flush"):
                done = writer.drain(time.monotonic() + drain_s)
                _report(writer, flushed=command.partition(" ")[2], complete=done)
            elif command in ("", "stop"):
                done = writer.drain(time.monotonic() + drain_s)
                _report(writer, stopped=True, complete=done)
                return
    finally:
        if owner and not writer.segments_of(owner):
            with contextlib.suppress(FileNotFoundError):  # nothing left to claim
                (directory / f"{owner}{CLAIM}").unlink()
        os.close(claim)
        writer.close()
        store.dispose()


if __name__ == "__main__":
    main()
