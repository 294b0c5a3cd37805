"""The store's migrations and the recorder's batching and shutdown flush (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
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


async def test_recorder_batches_and_flushes_everything_on_close(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    writes: list[int] = []
    insert = store.insert_traces

    def counting_insert(rows, attempts=()):  # type: ignore[no-untyped-def]
        writes.append(len(rows))
        insert(rows, attempts)

    store.insert_traces = counting_insert  # type: ignore[method-assign]
    recorder = Recorder(store, batch_size=50, flush_interval_s=60)
    recorder.start()
    for i in range(120):
        recorder.submit(record(i))
    for _ in range(200):  # bounded wait for the two full batches (PostgreSQL is slower)
        if len(writes) >= 2:
            break
        await asyncio.sleep(0.02)
    # Two full batches went out on size; the last 20 wait for the interval ...
    assert writes == [50, 50]
    await recorder.aclose()
    # ... and are written at shutdown, not lost.
    assert writes == [50, 50, 20]
    assert len(store.recent_requests(limit=1000)) == 120
    assert recorder.written == 120 and recorder.dropped == 0
    store.dispose()


async def test_submit_never_blocks_when_the_queue_is_full(db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    recorder = Recorder(store, max_queue=10)  # not started: nothing drains the queue
    for i in range(15):
        recorder.submit(record(i))
    assert recorder.dropped == 5
