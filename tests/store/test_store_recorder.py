"""The store's migrations and the recorder's batching and shutdown flush."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from polyroute.errors import ConfigError
from polyroute.store import Recorder, RequestRecord, Store
from polyroute.store.migrations import MIGRATIONS


def record(i: int) -> RequestRecord:
    return RequestRecord(
        id=f"r{i}", created_at=datetime.now(UTC), requested_model="m", stream=False, input_tokens=i
    )


def test_migrations_apply_in_order_once(db_url: str) -> None:
    store = Store(db_url)
    assert store.migrate() == [name for name, _ in MIGRATIONS]
    assert store.migrate() == []  # idempotent
    assert store.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
    names = [n for n, _ in MIGRATIONS]
    assert names == sorted(names) and names[0].startswith("0001_")
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("requests")}
    for needed in ("id", "created_at", "requested_model", "model", "provider", "status", "input_tokens",
                   "output_tokens", "latency_ms", "ttft_ms", "cost_usd", "error"):  # fmt: skip
        assert needed in columns


def test_bad_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        Store("not a url at all")


async def test_recorder_batches_and_flushes_everything_on_close(db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    writes: list[int] = []
    insert = store.insert_requests

    def counting_insert(rows):  # type: ignore[no-untyped-def]
        writes.append(len(rows))
        insert(rows)

    store.insert_requests = counting_insert  # type: ignore[method-assign]
    recorder = Recorder(store, batch_size=50, flush_interval_s=60)
    recorder.start()
    for i in range(120):
        recorder.submit(record(i))
    await asyncio.sleep(0.2)
    # Two full batches went out on size; the last 20 wait for the interval ...
    assert writes == [50, 50]
    await recorder.aclose()
    # ... and are written at shutdown, not lost.
    assert writes == [50, 50, 20]
    assert len(store.recent_requests(limit=1000)) == 120
    assert recorder.written == 120 and recorder.dropped == 0


async def test_submit_never_blocks_when_the_queue_is_full(db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    recorder = Recorder(store, max_queue=10)  # not started: nothing drains the queue
    for i in range(15):
        recorder.submit(record(i))
    assert recorder.dropped == 5
