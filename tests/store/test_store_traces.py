"""Traces, feedback, router state and retention in the store: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from polyroute.routing.base import Decision
from polyroute.store import Recorder, RequestRecord, Store
from polyroute.store.recorder import AttemptRecord
from polyroute.store.retention import Purger

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.migrate()
    yield s
    s.dispose()


def trace(i: int, *, at: datetime = T0, model: str = "a", router: str | None = None,
          status: int = 200) -> RequestRecord:  # fmt: skip
    return RequestRecord(
        id=f"t{i}", created_at=at + timedelta(seconds=i), requested_model="auto", stream=False,
        status=status, model=model, router=router, provider="up",
    )  # fmt: skip


async def write(store: Store, *records: RequestRecord) -> None:
    journal = Path(tempfile.mkdtemp(prefix="polyroute-journal-"))
    recorder = Recorder(store, journal_dir=journal, flush_interval_s=0.01)
    await recorder.start()
    for r in records:
        recorder.submit(r)
    await recorder.aclose()
    assert not list(journal.glob("*.jsonl"))  # all stored: the journal is empty again
    shutil.rmtree(journal, ignore_errors=True)


async def test_a_trace_comes_back_with_its_decision_attempts_text_and_feedback(
    store: Store,
) -> None:
    r = trace(1, router="bandit", model="b")
    r.decision = Decision(
        model="a", router="bandit", scores={"a": 0.9, "b": float("inf")}, costs={"a": 1e-5},
        reason="ucb1: a has the best UCB", fallbacks=("b",),
    )  # fmt: skip
    r.request_body = {"model": "auto", "api_key": "sk-secret", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "héllo"}]}  # fmt: skip
    r.response_text = "bonjour"
    r.attempts = [
        AttemptRecord(n=0, started_at=T0, model="a", provider="up", status=500, latency_ms=3.0, error="boom"),
        AttemptRecord(n=1, started_at=T0 + timedelta(milliseconds=3), model="b", provider="up",
                      upstream_model="b-up", input_tokens=4, output_tokens=2, latency_ms=7.5,
                      cost_usd=1e-6, cost_status="known"),
    ]  # fmt: skip
    await write(store, r)
    fb = store.insert_feedback(
        request_id="t1", score=1.0, kind="category", label="good", source="user"
    )
    assert fb["id"] > 0 and fb["created_at"].tzinfo is not None

    got = store.get_trace("t1")
    assert got is not None
    assert got["created_at"] == r.created_at and got["created_at"].tzinfo is not None
    assert got["decision"] == {
        "router": "bandit", "model": "a", "reason": "ucb1: a has the best UCB",
        "scores": {"a": 0.9, "b": None}, "costs": {"a": 1e-5}, "fallbacks": ["b"],
    }  # fmt: skip
    # The secret went, the rest (max_tokens too) stayed.
    assert got["request_body"] == {"model": "auto", "max_tokens": 5,
                                   "messages": [{"role": "user", "content": "héllo"}]}  # fmt: skip
    assert got["response_text"] == "bonjour"
    assert [(a["n"], a["model"], a["status"], a["error"]) for a in got["attempts"]] == [
        (0, "a", 500, "boom"), (1, "b", 200, None)
    ]  # fmt: skip
    assert got["attempts"][1]["upstream_model"] == "b-up" and got["attempts"][1]["cost_usd"] == 1e-6
    assert [(f["score"], f["kind"], f["label"], f["source"]) for f in got["feedback"]] == [
        (1.0, "category", "good", "user")
    ]
    assert store.feedback_count("t1") == 1 and store.feedback_count("t2") == 0
    assert store.get_trace("nope") is None
    summary = store.trace_summary("t1")
    assert summary is not None and (summary["router"], summary["model"], summary["status"]) == (
        "bandit",
        "b",
        200,
    )


async def test_list_traces_filters_pages_and_counts(store: Store) -> None:
    await write(
        store,
        trace(1, model="a", router="r1"),
        trace(2, model="b", router="r1"),
        trace(3, model="a", router="r2", status=502),
        trace(4, model="a"),
        trace(5, model="b", router="r2", status=429),
    )

    def ids(**filters: object) -> list[str]:
        return [t["id"] for t in store.list_traces(**filters)]  # type: ignore[arg-type]

    assert ids() == ["t5", "t4", "t3", "t2", "t1"]  # newest first
    assert ids(model="a") == ["t4", "t3", "t1"]
    assert ids(router="r2") == ["t5", "t3"]
    assert ids(status=502) == ["t3"]
    assert ids(errors=True) == ["t5", "t3"] and ids(errors=False) == ["t4", "t2", "t1"]
    assert ids(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4)) == ["t3", "t2"]
    # A since/until in another time zone means the same instant.
    paris = T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert ids(since=paris + timedelta(seconds=4)) == ["t5", "t4"]
    assert ids(limit=2) == ["t5", "t4"] and ids(limit=2, offset=2) == ["t3", "t2"]
    assert store.count_traces() == 5 and store.count_traces(model="a", errors=False) == 2
    listed = store.list_traces(limit=1)[0]
    assert "request_body" not in listed and "response_text" not in listed  # text only per trace
    assert listed["created_at"].tzinfo is not None


async def test_purge_deletes_old_traces_with_their_attempts_and_feedback(store: Store) -> None:
    now = datetime.now(UTC)
    old, new = trace(1, at=now - timedelta(days=40)), trace(2, at=now - timedelta(days=1))
    for r in (old, new):
        r.attempts = [AttemptRecord(n=0, started_at=r.created_at, model="a", provider="up")]
    await write(store, old, new)
    for tid in ("t1", "t2"):
        store.insert_feedback(request_id=tid, score=0.5, kind="number")
    purger = Purger(store, retention_days=30, interval_s=3600)
    assert await purger.purge() == 1
    assert store.get_trace("t1") is None and store.feedback_count("t1") == 0
    kept = store.get_trace("t2")
    assert kept is not None and len(kept["attempts"]) == 1 and len(kept["feedback"]) == 1
    assert await Purger(store, retention_days=None, interval_s=1).purge() == 0  # keep forever


async def test_the_background_purge_runs_at_start(store: Store) -> None:
    await write(store, trace(1, at=datetime.now(UTC) - timedelta(days=3)))
    purger = Purger(store, retention_days=2, interval_s=3600)
    purger.start()  # the first purge runs at once, then every hour
    for _ in range(500):
        if purger.purged:
            break
        await asyncio.sleep(0.01)
    await purger.aclose()
    assert purger.purged == 1 and store.get_trace("t1") is None


def test_router_state_is_saved_replaced_and_loaded(store: Store) -> None:
    assert store.load_router_states() == {}
    store.save_router_states({"bandit": ("ucb1", {"arms": {"a": {"n": 1, "sum": 1.0}}})})
    store.save_router_states({"bandit": ("ucb1", {"arms": {"a": {"n": 2, "sum": 1.5}}}),
                              "ts": ("thompson", {"arms": {}})})  # fmt: skip
    assert store.load_router_states() == {
        "bandit": ("ucb1", {"arms": {"a": {"n": 2, "sum": 1.5}}}),
        "ts": ("thompson", {"arms": {}}),
    }


def test_insert_traces_stores_what_sqlalchemy_insert_stores(store: Store) -> None:
    # insert_traces runs a precompiled executemany; the stored values (times in the
    # dialect's own form, booleans, NULL for a column a row leaves out) must match a plain
    # SQLAlchemy insert of the same rows.
    import sqlalchemy as sa

    from polyroute.store import schema

    full = {"id": "fast", "created_at": T0, "requested_model": "m", "stream": True, "status": 200,
            "model": "a", "latency_ms": 1.5, "request_body": '{"x": 1}'}  # fmt: skip
    sparse = {"id": "fast2", "created_at": T0, "requested_model": "m", "stream": False,
              "status": 502}  # fmt: skip
    attempt = {"request_id": "fast", "n": 0, "started_at": T0, "model": "a", "provider": "up",
               "status": 200}  # fmt: skip
    store.insert_traces([full, sparse], [attempt])
    with store.engine.begin() as conn:
        conn.execute(schema.requests.insert(), [{**full, "id": "slow"}])
        conn.execute(schema.requests.insert(), [{**sparse, "id": "slow2"}])
        conn.execute(schema.attempts.insert(), [{**attempt, "request_id": "slow"}])
    with store.engine.connect() as conn:
        # Raw text, not through the column types: what is on disk must be the same.
        rows = {r[0]: r[1:] for r in conn.execute(sa.text(
            "SELECT id, CAST(created_at AS TEXT), stream, status, model, latency_ms, request_body, "
            "error FROM requests"))}  # fmt: skip
        tries = {r[0]: r[1:] for r in conn.execute(sa.text(
            "SELECT request_id, CAST(started_at AS TEXT), n, status FROM attempts"))}  # fmt: skip
    assert rows["fast"] == rows["slow"]
    assert rows["fast2"] == rows["slow2"]
    assert rows["fast2"][-1] is None and rows["fast2"][3] is None  # left out: NULL
    assert tries["fast"] == tries["slow"]
    trace = store.get_trace("fast")
    assert trace is not None and trace["created_at"] == T0 and trace["stream"] is True
    assert trace["attempts"][0]["started_at"] == T0
