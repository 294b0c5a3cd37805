"""The dashboard's JSON API over a real store filled with known rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.conftest import REPO, remote_config

from polyroute.bench import leaderboard as lb
from polyroute.bench.results import read_results
from polyroute.config import Config
from polyroute.store import Store, schema

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = {"since": "2025-03-01T12:00:00Z", "until": "2025-03-01T13:00:00Z"}
BENCH = REPO / "tests" / "fixtures" / "local_bench.jsonl"


def request_row(i: str, minute: float, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": i, "created_at": T0 + timedelta(minutes=minute), "requested_model": kw.get("model", "a"),
        "model": "a", "provider": "up", "upstream_model": None, "router": None, "stream": False,
        "status": 200, "input_tokens": 10, "output_tokens": 5, "cached_tokens": None,
        "latency_ms": 100.0, "ttft_ms": 40.0, "cost_usd": 0.01, "cost_status": "known", "error": None,
        "decision": None, "request_body": None, "response_text": None,
    }  # fmt: skip
    row.update(kw)
    return row


ROWS = [
    # The router "ucb" chose a three times and b once; two requests named a model directly.
    request_row("r1", 1, router="ucb", requested_model="ucb", latency_ms=100.0),
    request_row("r2", 2, router="ucb", requested_model="ucb", latency_ms=300.0),
    request_row("r3", 12, router="ucb", requested_model="ucb", model="b", cost_usd=None, cost_status="unknown"),
    request_row("r4", 13, router="ucb", requested_model="ucb", status=502, latency_ms=5000.0, error="upstream down", cost_usd=None, cost_status=None, input_tokens=None, output_tokens=None),
    request_row("r5", 30, model="b", requested_model="b", cost_usd=0.0, cost_status="free"),
    request_row("r6", 31, requested_model="a", status=400, model=None, error="bad field", cost_usd=None, cost_status=None),
    # Outside the window: counted nowhere.
    request_row("old", -5),
    request_row("late", 61),
]  # fmt: skip
DECISION = {
    "router": "ucb", "model": "a", "reason": "ucb: a has the best upper bound",
    "scores": {"a": 0.9, "b": 0.4}, "costs": {"a": 0.01, "b": 0.002}, "fallbacks": ["b"],
}  # fmt: skip


def uniform(table: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """executemany wants the same keys in every row: missing columns are NULL."""
    names = [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]
    return [{n: r.get(n) for n in names} for r in rows]


def fill(store: Store) -> None:
    store.migrate()
    rows = [dict(r) for r in ROWS]
    rows[0]["decision"] = json.dumps(DECISION)
    rows[0]["request_body"] = json.dumps(
        {"model": "ucb", "messages": [{"role": "user", "content": "hi"}]}
    )
    rows[0]["response_text"] = "hello"
    with store.engine.begin() as conn:
        conn.execute(schema.requests.insert(), rows)
        conn.execute(
            schema.attempts.insert(),
            uniform(schema.attempts, [
                {"request_id": "r1", "n": 1, "started_at": T0 + timedelta(minutes=1, seconds=1), "model": "a", "provider": "up", "status": 200},
                {"request_id": "r1", "n": 0, "started_at": T0 + timedelta(minutes=1), "model": "b", "provider": "up", "status": 500, "error": "boom"},
            ]),
        )  # fmt: skip
        conn.execute(
            schema.feedback.insert(),
            uniform(schema.feedback, [
                {"request_id": "r1", "created_at": T0 + timedelta(minutes=5), "score": 1.0, "kind": "boolean", "source": "user"},
                {"request_id": "r2", "created_at": T0 + timedelta(minutes=6), "score": 0.5, "kind": "number", "source": "grader"},
                {"request_id": "r3", "created_at": T0 + timedelta(minutes=15), "score": 0.0, "kind": "category", "label": "bad"},
                {"request_id": "r1", "created_at": T0 - timedelta(hours=2), "score": 0.0, "kind": "number"},
            ]),
        )  # fmt: skip
        conn.execute(
            schema.router_state.insert(),
            [
                {"router": "ucb", "kind": "ucb1", "updated_at": T0, "state": json.dumps({"kind": "ucb1", "arms": {"a": {"n": 4, "sum": 3.0}, "b": {"n": 1, "sum": 0.0}}})},
                {"router": "ts", "kind": "thompson", "updated_at": T0, "state": json.dumps({"kind": "thompson", "arms": {"a": {"successes": 1.5, "failures": 0.5}}})},
            ],
        )  # fmt: skip


@pytest.fixture
def config(store_url: str) -> Config:
    """Every API test runs on SQLite and on PostgreSQL."""
    store = Store(store_url)
    fill(store)
    store.dispose()
    raw = remote_config("http://127.0.0.1:9/v1", store_url).model_dump()
    raw["dashboard"] = {"bench_results": [str(BENCH), "no/such/results.jsonl"]}
    return Config.model_validate(raw)


@pytest.fixture
async def client(asgi_client: Callable[..., Any], config: Config) -> Any:
    return await asgi_client(config)


async def get(client: Any, path: str, **params: Any) -> Any:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_summary_totals_the_window(client: Any) -> None:
    s = await get(client, "/ui/api/summary", **WINDOW)
    assert s["requests"] == 6
    assert s["errors"] == 2
    assert s["input_tokens"] == 50 and s["output_tokens"] == 25  # r4 has none
    # Known prices only; the free request adds $0 and the unknown one is counted apart.
    assert s["cost_usd"] == pytest.approx(0.02)
    assert s["unknown_cost"] == 1
    assert s["latency_ms_avg"] == pytest.approx(
        150.0
    )  # r1 100, r2 300, r3 100, r5 100 (errors left out)
    assert s["feedback"] == {"count": 3, "mean_score": pytest.approx(0.5)}
    assert s["models"] == ["a", "b"]
    assert s["routers"] == ["(direct)", "ucb"]


async def test_timeseries_buckets_and_fills_the_gaps(client: Any) -> None:
    ts = await get(client, "/ui/api/timeseries", bucket=600, **WINDOW)
    assert ts["bucket_s"] == 600
    points = ts["points"]
    assert [p["t"] for p in points] == [int(T0.timestamp()) + 600 * k for k in range(6)]
    assert [p["requests"] for p in points] == [2, 2, 0, 2, 0, 0]
    assert [p["errors"] for p in points] == [0, 1, 0, 1, 0, 0]
    assert points[0]["latency_ms_avg"] == pytest.approx(200.0)
    assert points[0]["latency_ms_max"] == pytest.approx(300.0)
    assert points[1]["latency_ms_max"] == pytest.approx(100.0)  # the 502's 5 s is not an answer
    assert points[1]["unknown_cost"] == 1
    assert points[2] == {**points[2], "requests": 0, "cost_usd": 0.0, "latency_ms_avg": None}


async def test_default_bucket_keeps_the_chart_readable(client: Any) -> None:
    ts = await get(client, "/ui/api/timeseries", **WINDOW)
    assert ts["bucket_s"] == 30  # one hour in at most 120 points
    assert sum(p["requests"] for p in ts["points"]) == 6


async def test_model_mix_per_router(client: Any) -> None:
    mix = await get(client, "/ui/api/model-mix", bucket=1800, **WINDOW)
    routers = {r["router"]: r for r in mix["routers"]}
    assert [r["router"] for r in mix["routers"]] == ["ucb", "(direct)"]  # direct requests last
    assert routers["ucb"]["models"] == {"a": 3, "b": 1}
    assert list(routers["ucb"]["models"]) == ["a", "b"]  # most chosen first
    assert routers["(direct)"]["models"] == {"b": 1}  # r6 never reached a model
    assert [s["models"] for s in routers["ucb"]["series"]] == [{"a": 3, "b": 1}, {}]


async def test_feedback_quality_per_model(client: Any) -> None:
    fb = await get(client, "/ui/api/feedback", **WINDOW)
    assert fb["models"] == [
        {"model": "a", "count": 2, "mean_score": pytest.approx(0.75)},
        {"model": "b", "count": 1, "mean_score": 0.0},
    ]
    assert {(r["router"], r["model"], r["count"]) for r in fb["by_router"]} == {
        ("ucb", "a", 2),
        ("ucb", "b", 1),
    }


async def test_learning_routers_state(client: Any) -> None:
    data = await get(client, "/ui/api/routers")
    by_name = {r["router"]: r for r in data["routers"]}
    assert by_name["ucb"]["arms"] == [
        {"model": "a", "n": 4.0, "mean": 0.75},
        {"model": "b", "n": 1.0, "mean": 0.0},
    ]
    assert by_name["ts"]["arms"] == [{"model": "a", "n": 2.0, "mean": 0.75}]
    assert by_name["ts"]["updated_at"].startswith("2025-03-01T12:00:00")


async def test_traces_newest_first_with_filters_and_pages(client: Any) -> None:
    page = await get(client, "/ui/api/traces", **WINDOW)
    assert [t["id"] for t in page["traces"]] == ["r6", "r5", "r4", "r3", "r2", "r1"]
    assert page["has_more"] is False
    r1 = page["traces"][-1]
    assert r1["feedback"] == {
        "count": 2,
        "mean_score": 0.5,
    }  # feedback outside the window counts too
    assert "decision" not in r1 and "request_body" not in r1

    async def ids(**params: Any) -> list[str]:
        return [
            t["id"] for t in (await get(client, "/ui/api/traces", **{**WINDOW, **params}))["traces"]
        ]

    assert await ids(model="b") == ["r5", "r3"]
    assert await ids(router="ucb") == ["r4", "r3", "r2", "r1"]
    assert await ids(router="(direct)") == ["r6", "r5"]
    assert await ids(status="error") == ["r6", "r4"]
    assert await ids(status="ok", router="ucb") == ["r3", "r2", "r1"]
    assert await ids(status="502") == ["r4"]
    assert await ids(since="2025-03-01T12:10:00+00:00") == ["r6", "r5", "r4", "r3"]
    first = await get(client, "/ui/api/traces", limit=4, **WINDOW)
    second = await get(client, "/ui/api/traces", limit=4, offset=4, **WINDOW)
    assert first["has_more"] is True and second["has_more"] is False
    assert [t["id"] for t in first["traces"] + second["traces"]] == [
        "r6",
        "r5",
        "r4",
        "r3",
        "r2",
        "r1",
    ]


async def test_one_trace_has_decision_attempts_feedback_and_text(client: Any) -> None:
    t = await get(client, "/ui/api/traces/r1")
    assert t["decision"] == DECISION
    assert t["request_body"]["messages"][0]["content"] == "hi"
    assert t["response_text"] == "hello"
    assert [(a["n"], a["model"], a["status"]) for a in t["attempts"]] == [
        (0, "b", 500),
        (1, "a", 200),
    ]
    assert [f["score"] for f in t["feedback"]] == [0.0, 1.0]  # oldest first
    assert t["created_at"] == "2025-03-01T12:01:00+00:00"


async def test_unknown_trace_is_404(client: Any) -> None:
    r = await client.get("/ui/api/traces/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert "nope" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/ui/api/timeseries", {"bucket": "abc"}, "bucket"),
        ("/ui/api/timeseries", {"bucket": "0"}, "bucket"),
        (
            "/ui/api/timeseries",
            {"bucket": "1", "since": "2025-01-01", "until": "2025-02-01"},
            "bucket",
        ),
        ("/ui/api/summary", {"since": "yesterday"}, "since"),
        ("/ui/api/summary", {"since": "2025-03-02", "until": "2025-03-01"}, "since"),
        ("/ui/api/summary", {"sice": "2025-03-01"}, "sice"),
        ("/ui/api/summary", {"until": "nan"}, "until"),
        ("/ui/api/traces", {"status": "fine"}, "status"),
        ("/ui/api/traces", {"limit": "0"}, "limit"),
        ("/ui/api/traces", {"offset": "-1"}, "offset"),
        ("/ui/api/leaderboard", {"x": "1"}, "x"),
    ],
)
async def test_bad_query_parameters_are_400_naming_them(
    client: Any, path: str, params: dict[str, str], param: str
) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert param in err["message"]


async def test_leaderboard_of_the_configured_results_files(client: Any) -> None:
    boards = (await get(client, "/ui/api/leaderboard"))["boards"]
    assert len(boards) == 2
    board, missing = boards
    expected = lb.compute(read_results(BENCH))
    assert board["prompts"] == expected.prompts
    assert board["oracle"] == pytest.approx(expected.oracle)
    assert [(m["model"], m["quality"]) for m in board["models"]] == [
        (s.model, pytest.approx(s.quality)) for s in expected.models
    ]
    assert missing == {
        "path": "no/such/results.jsonl",
        "error": "results file no/such/results.jsonl does not exist",
    }


async def test_the_page_and_its_files(client: Any) -> None:
    page = await client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for name in ("app.js", "charts.js", "app.css"):
        assert f"/ui/static/{name}" in page.text
        r = await client.get(f"/ui/static/{name}")
        assert r.status_code == 200 and len(r.content) > 1000
        again = await client.get(f"/ui/static/{name}", headers={"if-none-match": r.headers["etag"]})
        assert again.status_code == 304
    assert (
        (await client.get("/ui/static/app.js"))
        .headers["content-type"]
        .startswith("text/javascript")
    )
    missing = await client.get("/ui/static/../db.py")
    assert missing.status_code == 404
    assert (await client.get("/ui/static/nope.js")).json()["error"]["code"] == "not_found"


async def test_dashboard_can_be_turned_off(asgi_client: Callable[..., Any], db_url: str) -> None:
    raw = remote_config("http://127.0.0.1:9/v1", db_url).model_dump()
    raw["dashboard"] = {"enabled": False}
    client = await asgi_client(Config.model_validate(raw))
    r = await client.get("/ui/api/summary")
    assert r.status_code == 404
    assert "Unknown request URL" in r.json()["error"]["message"]
