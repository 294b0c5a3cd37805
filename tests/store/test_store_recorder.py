"""The store's migrations and the recorder's batching and shutdown flush (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from polyroute.errors import ConfigError
from polyroute.store import Recorder, RequestRecord, Store
from polyroute.store.migrations import MIGRATIONS


def record(i: int) -> RequestRecord:
    return RequestRecord(
        id=f"r{i}", created_at=datetime.now(UTC), requested_model="m", stream=False, input_tokens=i
    )


def test_migrations_apply_in_order_once(store_url: str) -> None:
    store = Store(store_url)
    assert store.migrate() == [name for name, _ in MIGRATIONS]
    assert store.migrate() == []  # idempotent
    assert store.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
    names = [n for n, _ in MIGRATIONS]
    assert names == sorted(names) and names[0].startswith("0001_")
    inspector = sa.inspect(store.engine)
    columns = {c["name"] for c in inspector.get_columns("requests")}
    for needed in ("id", "created_at", "requested_model", "model", "provider", "status", "input_tokens",
                   "output_tokens", "latency_ms", "ttft_ms", "cost_usd", "error",
                   "decision", "request_body", "response_text"):  # fmt: skip
        assert needed in columns
    assert {"attempts", "feedback", "router_state"} <= set(inspector.get_table_names())
    store.dispose()


def test_bad_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        Store("not a url at all")


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql+pg8000://u@127.0.0.1/db", "pg8000"),
        ("postgresql+nonesuch://u@127.0.0.1/db", "postgresql+nonesuch"),
    ],
)
def test_a_missing_driver_is_a_config_error_that_says_what_to_install(
    url: str, driver: str
) -> None:
    with pytest.raises(
        ConfigError, match=rf"needs the '{re.escape(driver)}' driver.*polyroute\[postgres\]"
    ):
        Store(url)


async def test_the_recorder_journals_stores_and_empties_the_journal(
    store_url: str, tmp_path: Path
) -> None:
    store = Store(store_url)
    store.migrate()
    recorder = Recorder(store, journal_dir=tmp_path / "journal", batch_size=50, flush_interval_s=60)
    await recorder.start()
    for i in range(120):
        recorder.submit(record(i))
    # Journaled at once, before anything is in the database.
    assert recorder.stats().journaled == 120 and recorder.stats().journal_bytes > 0
    await recorder.flush()  # the writer drains without waiting for its interval
    stats = recorder.stats()
    assert (stats.written, stats.queue_depth, stats.dropped, stats.quarantined) == (120, 0, 0, 0)
    assert stats.writer_alive
    assert len(store.recent_requests(limit=1000)) == 120
    await recorder.aclose()
    assert not recorder.stats().writer_alive
    assert not list((tmp_path / "journal").glob("*.jsonl"))  # stored: deleted
    assert len(store.recent_requests(limit=1000)) == 120
    store.dispose()


async def test_records_submitted_after_close_are_stored_at_the_next_start(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.migrate()
    journal = tmp_path / "journal"
    first = Recorder(store, journal_dir=journal)
    await first.start()
    first.submit(record(0))
    await first.aclose()
    for i in range(1, 6):
        first.submit(record(i))  # late: the writer is gone, the journal is not
    assert len(store.recent_requests()) == 1
    first.journal.close()  # the process ending would release it the same way
    second = Recorder(store, journal_dir=journal)
    await second.start()
    await second.flush()
    assert sorted(r["id"] for r in store.recent_requests()) == [f"r{i}" for i in range(6)]
    assert second.stats().replayed == 5
    await second.aclose()
    store.dispose()


_CRASHING = """
import asyncio, sys, time
from datetime import UTC, datetime
from pathlib import Path
from pathlib import Path
from polyroute.store import Recorder, RequestRecord, Store

async def main(journal, n):
    # A database that is down (nothing listens on port 1): the writer keeps retrying, so
    # when the kill comes the records are in the journal and nowhere else.
    store = Store("postgresql+psycopg://nobody@127.0.0.1:1/down")
    recorder = Recorder(store, journal_dir=Path(journal), flush_interval_s=0.01)
    await recorder.start()
    for i in range(n):
        recorder.submit(RequestRecord(id=f"k{i}", created_at=datetime.now(UTC),
                                      requested_model="m", stream=False))
    for _ in range(3000):  # until the writer has tried, and failed, to store them
        await asyncio.sleep(0.01)
        if recorder.stats().last_error:
            break
    print("submitted", recorder.stats().last_error is not None, flush=True)
    await asyncio.sleep(600)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_kill_9_of_the_gateway_and_its_writer_loses_no_record(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.migrate()
    journal = tmp_path / "journal"
    # Its own session, so that one SIGKILL takes the writer process down with it.
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING, str(journal), "500"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"submitted True"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(list(journal.glob("*.jsonl"))) == 1  # the records are in the journal ...
    recorder = Recorder(store, journal_dir=journal)
    await recorder.start()
    await recorder.flush()
    await recorder.aclose()
    ids = {r["id"] for r in store.recent_requests(limit=1000)}
    assert ids == {f"k{i}" for i in range(500)}  # ... and replayed from it, every one
    assert not list(journal.glob("*.jsonl"))
    store.dispose()


async def test_a_writer_that_dies_is_replaced_and_nothing_is_lost(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.migrate()
    recorder = Recorder(store, journal_dir=tmp_path / "journal", flush_interval_s=0.05)
    await recorder.start()
    for i in range(50):
        recorder.submit(record(i))
    first = recorder._process
    assert first is not None
    first.kill()
    for _ in range(500):  # bounded: the recorder starts a new writer about a second later
        if recorder._process is not first and recorder.stats().writer_alive:
            break
        await asyncio.sleep(0.02)
    assert recorder._process is not first and recorder.stats().writer_alive
    for i in range(50, 60):
        recorder.submit(record(i))
    await recorder.flush()
    stats = recorder.stats()
    assert (stats.journaled, stats.written, stats.queue_depth) == (60, 60, 0)
    await recorder.aclose()
    assert len(store.recent_requests(limit=1000)) == 60
    store.dispose()


async def test_an_in_memory_database_is_written_from_this_process() -> None:
    # No other process can reach it: the journal is stored by a thread of this one.
    store = Store("sqlite://")
    store.migrate()
    recorder = Recorder(store)
    assert recorder.in_process
    await recorder.start()
    recorder.submit(record(1))
    await recorder.flush()
    assert recorder.stats().journaled == 1 and recorder.stats().writer_alive
    assert [r["id"] for r in store.recent_requests()] == ["r1"]
    await recorder.aclose()
    assert not list(recorder.journal_dir.glob("*.jsonl"))
    store.dispose()


async def test_sealed_segments_are_deleted_once_stored(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    store.migrate()
    journal = tmp_path / "journal"
    recorder = Recorder(store, journal_dir=journal, segment_bytes=2000, flush_interval_s=0.05)
    await recorder.start()
    for i in range(100):
        recorder.submit(record(i))
    assert recorder.journal._seq > 5  # rotated: a segment holds a few records
    await recorder.flush()
    assert len(store.recent_requests(limit=1000)) == 100
    # Only the segment still open is left; the sealed ones are stored and gone.
    assert [p.name for p in journal.glob("*.jsonl")] == [
        f"{recorder.journal.owner}-{recorder.journal._seq:06d}.jsonl"
    ]
    await recorder.aclose()
    assert not list(journal.glob("*.jsonl"))
    store.dispose()


async def test_a_journal_that_cannot_be_written_stops_the_start_with_a_config_error(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    recorder = Recorder(store, journal_dir=blocker / "journal")
    with pytest.raises(ConfigError, match=r"store.journal_dir .* cannot be written"):
        await recorder.start()
    store.dispose()
