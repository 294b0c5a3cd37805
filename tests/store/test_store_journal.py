"""One bad row never costs another: values fitted to the schema, batches split, rows quarantined.

The cases are the issue's (issue 11), each of which used to fail its whole batch on
PostgreSQL or SQLite; every test runs on both through the real journal and writer.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from polyroute.routing.base import Decision
from polyroute.store import Recorder, RequestRecord, Store
from polyroute.store.journal import QUARANTINE, Journal
from polyroute.store.recorder import AttemptRecord, trace_line
from polyroute.store.writer import DatabaseDown, JournalWriter


def normal(i: int) -> RequestRecord:
    return RequestRecord(
        id=f"ok{i}", created_at=datetime.now(UTC), requested_model="echo", stream=False,
        model="echo", provider="up", input_tokens=3, output_tokens=2, response_text="fine",
    )  # fmt: skip


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"x": value}
    return value


def bad_records() -> dict[str, RequestRecord]:
    now = datetime.now(UTC)

    def bad(key: str, **values: Any) -> RequestRecord:
        return RequestRecord(id=key, created_at=now, stream=False, **values)

    return {
        "long-model": bad("long-model", requested_model="m" * 300, model="m" * 300, status=404),
        "nul-model": bad("nul-model", requested_model="a\x00b", status=404),
        "nul-answer": bad("nul-answer", requested_model="echo", response_text="x\x00y"),
        "int4": bad("int4", requested_model="echo", input_tokens=2**31, output_tokens=-(2**40)),
        "huge": bad("huge", requested_model="echo", input_tokens=int(1e30), cost_usd=1e30),
        "nan": bad("nan", requested_model="echo", latency_ms=math.nan, ttft_ms=math.inf),
        "deep": bad("deep", requested_model="echo", request_body={"extra": nested(300)}),
        "deeper": bad("deeper", requested_model="echo", request_body={"extra": nested(1000)}),
    }


async def test_the_issues_bad_values_are_fitted_and_cost_no_other_trace(
    store_url: str, tmp_path: Path
) -> None:
    store = Store(store_url)
    store.migrate()
    recorder = Recorder(store, journal_dir=tmp_path / "journal", flush_interval_s=60)
    await recorder.start()
    bad = bad_records()
    bad["nan"].decision = Decision(model="echo", router="r", scores={"echo": math.inf})
    bad["nan"].attempts = [
        AttemptRecord(n=0, started_at=datetime.now(UTC), model="x" * 500, provider="up",
                      input_tokens=2**63, latency_ms=math.nan, error="e\x00")
    ]  # fmt: skip
    for i in range(30):
        recorder.submit(normal(i))
    for record in bad.values():
        recorder.submit(record)
    for i in range(30, 60):
        recorder.submit(normal(i))
    await recorder.flush()
    stats = recorder.stats()
    await recorder.aclose()
    assert (stats.written, stats.quarantined, stats.dropped) == (60 + len(bad), 0, 0)
    assert store.count_traces() == 60 + len(bad)

    def got(key: str) -> dict[str, Any]:
        trace = store.get_trace(key)
        assert trace is not None, key
        return trace

    assert got("long-model")["requested_model"] == "m" * 200  # the column's length
    assert got("long-model")["model"] == "m" * 200
    assert got("nul-model")["requested_model"] == "a\ufffdb"
    assert got("nul-answer")["response_text"] == "x\ufffdy"
    assert (got("int4")["input_tokens"], got("int4")["output_tokens"]) == (None, None)
    assert got("huge")["input_tokens"] is None and got("huge")["cost_usd"] == 1e30
    assert (got("nan")["latency_ms"], got("nan")["ttft_ms"]) == (None, None)
    assert got("nan")["decision"]["scores"] == {"echo": None}  # JSON has no infinity
    attempt = got("nan")["attempts"][0]
    assert attempt["model"] == "x" * 200 and attempt["input_tokens"] is None
    assert attempt["latency_ms"] is None and attempt["error"] == "e\ufffd"
    for key in ("deep", "deeper"):
        body = orjson.dumps(got(key)["request_body"]).decode()
        assert "nested deeper than 64 levels" in body, key
    store.dispose()


def _writer(store: Store, directory: Path) -> JournalWriter:
    return JournalWriter(store, directory, batch_size=1000)


def test_a_row_the_database_refuses_is_quarantined_with_its_reason(
    store_url: str, tmp_path: Path
) -> None:
    store = Store(store_url)
    store.migrate()
    journal = Journal(tmp_path)
    for i in range(10):
        journal.append(trace_line(normal(i)))
    refused = normal(99)
    refused.requested_model = None  # type: ignore[assignment]  # NOT NULL: no fit can save it
    journal.append(trace_line(refused))
    journal.close()
    writer = _writer(store, tmp_path)
    assert writer.drain(time.monotonic() + 30)
    assert store.count_traces() == 10
    assert (writer.written, writer.quarantined, writer.split_batches) == (11, 1, 1)
    [entry] = [orjson.loads(line) for line in (tmp_path / QUARANTINE).read_bytes().splitlines()]
    assert "IntegrityError" in entry["reason"] and "ok99" in entry["line"]
    assert not list(tmp_path.glob("*.jsonl"))  # stored or kept aside: the segment is done
    writer.close()
    store.dispose()


def test_a_replay_stores_each_trace_once(store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    store.migrate()
    journal = Journal(tmp_path)
    records = [normal(i) for i in range(20)]
    for r in records:
        r.attempts = [AttemptRecord(n=0, started_at=r.created_at, model="echo", provider="up")]
        journal.append(trace_line(r))
    # A writer stored the first 20 and died before deleting the segment ...
    first = _writer(store, tmp_path)
    assert first.drain(time.monotonic() + 30)
    first.close()
    assert list(tmp_path.glob("*.jsonl"))  # still locked by the journal: not deleted
    journal.append(trace_line(normal(20)))
    journal.close()
    # ... so the next one reads all 21 lines again.
    second = _writer(store, tmp_path)
    assert second.drain(time.monotonic() + 30)
    assert second.written == 21 and second.quarantined == 0
    assert store.count_traces() == 21
    assert len(store.get_trace("ok0")["attempts"]) == 1  # type: ignore[index]
    assert not list(tmp_path.glob("*.jsonl"))
    second.close()
    store.dispose()


def test_a_line_cut_by_a_crash_is_quarantined_not_lost_silently(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.migrate()
    journal = Journal(tmp_path)
    journal.append(trace_line(normal(0)))
    journal.append(trace_line(normal(1))[:40])  # the write a kill cut short
    journal.close()
    writer = _writer(store, tmp_path)
    assert writer.drain(time.monotonic() + 30)
    assert store.count_traces() == 1 and writer.quarantined == 1
    entry = orjson.loads((tmp_path / QUARANTINE).read_bytes())
    assert "incomplete line" in entry["reason"]
    writer.close()
    store.dispose()


def test_a_database_that_is_down_quarantines_nothing_and_keeps_the_journal(
    db_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("psycopg")
    down = Store("postgresql+psycopg://nobody@127.0.0.1:1/down")  # nothing listens there
    journal = Journal(tmp_path)
    for i in range(5):
        journal.append(trace_line(normal(i)))
    journal.close()
    writer = _writer(down, tmp_path)
    with pytest.raises(DatabaseDown):
        writer.step()
    assert writer.quarantined == 0 and writer.db_errors == 1 and writer.last_error
    assert not (tmp_path / QUARANTINE).exists()
    writer.close()
    down.dispose()
    # The database is back (here: another one): everything is stored from the journal.
    store = Store(db_url)
    store.migrate()
    writer = _writer(store, tmp_path)
    assert writer.drain(time.monotonic() + 30)
    assert store.count_traces() == 5
    writer.close()
    store.dispose()


def test_a_long_backlog_is_stored_without_opening_every_segment(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.migrate()
    for _ in range(20):  # gateways that began a segment and died before any request
        dead = Journal(tmp_path)
        dead.open()
        dead.close()
    journal = Journal(tmp_path, segment_bytes=1)  # one record a segment
    for i in range(40):
        journal.append(trace_line(normal(i)))
    journal.close()
    writer = _writer(store, tmp_path)
    writer.step()
    assert len(writer.segments) <= 16  # held open at once, however long the backlog
    assert writer.drain(time.monotonic() + 30)
    assert store.count_traces() == 40 and not list(tmp_path.glob("*.jsonl"))
    writer.close()
    store.dispose()


def test_a_journal_line_from_before_the_rescued_column_is_still_stored(
    db_url: str, tmp_path: Path
) -> None:
    # A gateway of the previous version crashed, leaving lines whose attempts lack
    # ``rescued`` (migration 0004): the new writer stores them with the column unknown.
    store = Store(db_url)
    store.migrate()
    rescued = normal(1)
    rescued.attempts = [
        AttemptRecord(n=0, started_at=rescued.created_at, model="a", provider="up", rescued=True),
        AttemptRecord(n=1, started_at=rescued.created_at, model="b", provider="up"),
    ]
    old = normal(0)
    old.attempts = [AttemptRecord(n=0, started_at=old.created_at, model="echo", provider="up")]
    version, request, attempts = orjson.loads(trace_line(old))
    journal = Journal(tmp_path)
    journal.append(orjson.dumps([version, request, [a[:-1] for a in attempts]]) + b"\n")
    journal.append(trace_line(rescued))
    journal.close()
    writer = _writer(store, tmp_path)
    assert writer.drain(time.monotonic() + 30)
    assert writer.quarantined == 0 and store.count_traces() == 2
    assert [a["rescued"] for a in store.get_trace("ok0")["attempts"]] == [None]  # type: ignore[index]
    assert [a["rescued"] for a in store.get_trace("ok1")["attempts"]] == [True, False]  # type: ignore[index]
    writer.close()
    store.dispose()
