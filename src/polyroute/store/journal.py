"""The write-ahead journal: every trace is appended to a local file before its response ends.

A journal is a directory of segments, ``<owner>-<seq>.jsonl``, one line per trace (see
:mod:`polyroute.store.rows`). The gateway appends each line with one ``write`` of bytes it
encoded already; the operating system keeps what was written across a ``kill -9`` of the
process (not across a power cut: there is no fsync per trace). The writer process
(:mod:`polyroute.store.writer`) reads the segments into the database and deletes each
segment once the database has all of it, so the journal holds what the database does not
have yet, and nothing more for long.

Who may still append to a segment is told by a lock, not by a name: the gateway holds an
exclusive ``flock`` on the segment it appends to, for as long as it appends, and the kernel
drops it when the process ends however it ends. A segment the writer can lock is sealed.
A segment is created under a temporary name and renamed once locked, so the writer never
sees an unlocked segment that is about to be written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path

import sqlalchemy as sa

SUFFIX = ".jsonl"
#: Lines the database refused, each with the reason (never in a segment's name pattern).
QUARANTINE = "quarantine.ndjson"
#: A segment is closed and a new one begun past this size.
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024


def default_journal_dir(database_url: str) -> Path:
    """Where a database's journal lives when the config does not say.

    Beside a SQLite file (``polyroute.db.journal/``); for a server database, under the
    user's data directory, named after the URL without its password.
    """
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).expanduser()
        return path.with_name(path.name + ".journal")
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    key = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return data_home / "polyroute" / "journal" / key


def owner_token() -> str:
    """A name prefix unique to this process, that sorts segments in the order they began."""
    return f"{time.time_ns():020d}-{os.getpid()}"


class Journal:
    """The appending side, used on the gateway's event loop: one ``write`` per trace.

    Never raises from :meth:`append`: a line that cannot be written is counted in
    ``failed`` (and the caller counts it as dropped).
    """

    def __init__(self, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.owner = owner_token()
        self.appended = 0
        self.appended_bytes = 0
        self.failed = 0
        self._seq = 0
        self._fd: int | None = None
        self._size = 0

    def open(self) -> None:
        """Begin a segment (appending begins one too, when none is open)."""
        if self._fd is None:
            self._fd = self._new_segment()

    def _new_segment(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{self.owner}-{self._seq:06d}"
        temporary = self.directory / f"{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(temporary, self.directory / f"{name}{SUFFIX}")
        except BaseException:
            os.close(fd)
            raise
        self._size = 0
        return fd

    def append(self, line: bytes) -> bool:
        """Append one encoded line; False when it could not be written."""
        try:
            if self._fd is None or self._size >= self.segment_bytes:
                self._rotate()
            assert self._fd is not None
            view = memoryview(line)
            while view:  # a regular file takes it in one write; a short one is continued
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            self.failed += 1
            return False
        self._size += len(line)
        self.appended += 1
        self.appended_bytes += len(line)
        return True

    def _rotate(self) -> None:
        old, self._fd = self._fd, self._new_segment()
        if old is not None:
            os.close(old)  # unlocks it: the writer may finish and delete it

    def close(self) -> None:
        """Seal the open segment. Appending later begins a new one (replayed at next start)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def journal_bytes(directory: Path) -> int:
    """Bytes in the journal's segments now (what the database may not have yet)."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(SUFFIX):
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        total += entry.stat().st_size
    except FileNotFoundError:
        return 0
    return total
