"""Two gateway replicas on a real local Ray cluster, through Ray Serve's HTTP proxy.

One module-wide deployment (``polyroute ray serve --replicas 2 --detach`` on a ``ray start
--head`` cluster of 2 CPUs on 127.0.0.1), an echo upstream and a real PostgreSQL: the
openai SDK's plain and streamed chat, ``/v1/models``, ``auto``, feedback; what must be exact
across both replicas under concurrent load (``/metrics`` totals, by model; one online router
taught by feedback on both; a budget that fits exactly ten requests; a rate limit of five a
minute); one replica killed with ``kill -9`` under load, which loses no trace, leaves no
reservation held, and whose requests in flight get an OpenAI error from the proxy. The last
test redeploys the same application autoscaled (1 to 2 replicas) and loads it until Serve
starts the second replica.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.auth.support import ADMIN, admin_headers, create_key, eventually
from tests.support.echo_upstream import EchoUpstream
from tests.support.ray_cluster import free_port, replica_pids, running_ray_cluster

if not os.environ.get("CI"):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install '.[ray]'")

pytestmark = [pytest.mark.ray, pytest.mark.e2e, pytest.mark.slow]

PROMPT = [{"role": "user", "content": "a b c d e"}]
COST_NUSD = 5 * 1000  # 5 output tokens at $1 per million: the worst case is the real cost
TTL_S = 3.0  # auth.reservation_ttl_s: a killed replica's reservations are charged after this


#: Ray Serve's autoscaling sees requests in flight as the proxy's handle and the replicas push
#: them (every 10 s by default): every half second here, so that the test scales in seconds.
FAST_AUTOSCALING = {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}
REPLICA = "x-polyroute-replica"


@dataclass(frozen=True)
class Deployment:
    root: str
    database_url: str
    journal: Path
    #: ``polyroute ray serve`` as the fixture ran it, to run it again with other options.
    command: list[str]
    env: dict[str, str]


def _config(upstream: str, database_url: str, journal: Path) -> dict[str, Any]:
    return {
        "store": {"database_url": database_url, "flush_interval_s": 0.05,
                  "journal_dir": str(journal)},
        "auth": {"cache_ttl_s": 0.2, "reservation_ttl_s": TTL_S, "rate_limits": "database"},
        "feedback": {"save_interval_s": 0.2},
        "providers": {"up": {"kind": "openai", "base_url": upstream}},
        "models": [
            {"name": "exact", "provider": "up", "upstream_model": "echo",
             "input_price": 0.0, "output_price": 1.0},
            {"name": "slow-exact", "provider": "up", "upstream_model": "slow-2",
             "input_price": 0.0, "output_price": 1.0},
        ],
        # ``auto`` spreads at random; ``bandit`` learns from feedback (and only that test's).
        "routers": {"spread": {"kind": "random"}, "bandit": {"kind": "ucb1", "exploration": 0.5}},
        "default_router": "spread",
    }  # fmt: skip


@pytest.fixture(scope="module")
def deployment(echo_upstream: EchoUpstream, postgres_server: str) -> Iterator[Deployment]:
    import psycopg

    name = f"polyroute_ray_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    database_url = f"{base}/{name}"
    with running_ray_cluster(
        extra_env={"POLYROUTE_ADMIN_KEY": ADMIN, **FAST_AUTOSCALING}
    ) as cluster:
        journal = cluster.temp_dir / "journal"  # one directory, shared by the node's replicas
        path = cluster.temp_dir / "polyroute.yaml"
        path.write_text(yaml.safe_dump(_config(echo_upstream.base_url, database_url, journal)))
        port = free_port()
        command = [
            sys.executable, "-c", "from polyroute.cli.main import main; main()", "ray", "serve",
            "--config", str(path), "--address", cluster.address, "--host", "127.0.0.1",
            "--port", str(port), "--metrics-dir", str(cluster.temp_dir / "metrics"), "--detach",
        ]  # fmt: skip
        done = subprocess.run(
            [*command, "--replicas", "2"], env=cluster.env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"http://127.0.0.1:{port}/v1" in done.stderr
        yield Deployment(f"http://127.0.0.1:{port}", database_url, journal, command, cluster.env)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _client(d: Deployment, secret: str = ADMIN) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{d.root}/v1", api_key=secret, max_retries=0, timeout=30)


def test_two_replicas_serve_the_openai_api(deployment: Deployment) -> None:
    assert len(replica_pids()) == 2
    client = _client(deployment)
    ids = {m.id for m in client.models.list().data}
    assert {"exact", "slow-exact", "auto"} <= ids

    answer = client.chat.completions.create(model="exact", messages=PROMPT)
    assert answer.choices[0].message.content == "a b c d e"
    assert answer.usage is not None and answer.usage.completion_tokens == 5

    chunks = list(
        client.chat.completions.create(
            model="exact", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "a b c d e"  # the echo streams word by word
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5

    routed = client.chat.completions.create(model="auto", messages=PROMPT)
    assert routed.model in {"exact", "slow-exact"}

    # Feedback may reach the other replica: it finds the trace in the store once written.
    def feedback() -> None:
        r = httpx.post(f"{deployment.root}/v1/feedback", headers=admin_headers(),
                       json={"trace_id": routed.id, "score": 1.0}, timeout=10)  # fmt: skip
        assert r.status_code == 200, r.text

    eventually(feedback)
    # Both replicas append to the one journal directory, each to its own segment.
    owners = {p.name.rsplit("-", 1)[0] for p in deployment.journal.glob("*.jsonl")}
    assert len(owners) == 2


def test_a_bad_request_is_an_openai_error_through_the_proxy(deployment: Deployment) -> None:
    r = httpx.post(f"{deployment.root}/v1/chat/completions", headers=admin_headers(),
                   json={"model": "nope", "messages": PROMPT}, timeout=10)  # fmt: skip
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


async def _answered_by(
    d: Deployment, n: int, model: str = "exact", concurrency: int = 16
) -> list[tuple[str, str]]:
    """n chat completions through the proxy, ``concurrency`` at a time: (trace id, replica)."""
    gate = asyncio.Semaphore(concurrency)
    client = openai.AsyncOpenAI(base_url=f"{d.root}/v1", api_key=ADMIN, max_retries=0, timeout=30)

    async def one() -> tuple[str, str]:
        async with gate:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=PROMPT
            )
            answer = raw.parse()
            assert answer.choices[0].message.content == "a b c d e"
            return answer.id, raw.headers[REPLICA]

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await client.close()


Totals = dict[tuple[str, str, str], float]


def _totals(r: httpx.Response) -> tuple[Totals, str]:
    """A ``/metrics`` answer: (sample name, model, token type) → value (other labels summed),
    and the replica that answered it."""
    assert r.status_code == 200, r.text
    totals: Totals = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            key = (sample.name, sample.labels.get("model", ""), sample.labels.get("type", ""))
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals, r.headers[REPLICA]


def _scrape(d: Deployment) -> tuple[Totals, str]:
    """``/metrics`` through the proxy, once."""
    return _totals(httpx.get(f"{d.root}/metrics", headers=admin_headers(), timeout=10))


def _scrapes(d: Deployment, n: int) -> list[tuple[Totals, str]]:
    """n concurrent scrapes: the proxy sends a request to the less busy of two replicas, so
    scrapes one after another may all reach the same idle one; concurrent ones spread."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10, headers=admin_headers()) as c:
            return list(await asyncio.gather(*(c.get(f"{d.root}/metrics") for _ in range(n))))

    return [_totals(r) for r in asyncio.run(run())]


def _settled(d: Deployment) -> Totals:
    """A scrape once the recorder figures have caught up: each replica publishes its own
    every second (the request counters are exact at once)."""

    def steady() -> Totals:
        first, _ = _scrape(d)
        time.sleep(1.2)
        second, _ = _scrape(d)
        assert first == second
        return second

    return eventually(steady, timeout_s=20)


def test_metrics_add_up_across_replicas_by_model(deployment: Deployment) -> None:
    before = _settled(deployment)

    async def load() -> list[tuple[str, str]]:
        fast, slow = await asyncio.gather(
            _answered_by(deployment, 36), _answered_by(deployment, 4, model="slow-exact")
        )
        return fast + slow

    answers = asyncio.run(load())
    assert len({replica for _, replica in answers}) == 2  # both replicas served some

    def delta(now: Totals, name: str, model: str = "", kind: str = "") -> float:
        return now.get((name, model, kind), 0.0) - before.get((name, model, kind), 0.0)

    def counted() -> dict[str, Totals]:
        by_replica: dict[str, Totals] = {}
        for _ in range(6):  # rounds of concurrent scrapes, until both replicas answered some
            for now, replica in _scrapes(deployment, 8):
                assert delta(now, "polyroute_requests_total", "exact") == 36
                assert delta(now, "polyroute_requests_total", "slow-exact") == 4
                assert delta(now, "polyroute_tokens_total", "exact", "output") == 36 * 5
                assert delta(now, "polyroute_request_duration_seconds_count", "slow-exact") == 4
                assert delta(now, "polyroute_cost_usd_total", "exact") == pytest.approx(
                    36 * COST_NUSD / 1e9
                )
                assert delta(now, "polyroute_recorder_journaled_total") == 40
                by_replica[replica] = now
            if len(by_replica) == 2:
                break
        return by_replica

    by_replica = eventually(counted, timeout_s=20)
    assert len(by_replica) == 2  # and both, scraped, gave the same (whole) totals


def test_feedback_through_both_replicas_teaches_one_router(deployment: Deployment) -> None:
    answers = asyncio.run(_answered_by(deployment, 30, model="bandit"))
    assert len({replica for _, replica in answers}) == 2
    engine = sa.create_engine(deployment.database_url)
    eventually(lambda: _all_stored(engine, [i for i, _ in answers]), timeout_s=20)

    async def teach() -> list[tuple[dict[str, Any], str]]:
        async with httpx.AsyncClient(timeout=30) as c:

            async def one(trace_id: str) -> tuple[dict[str, Any], str]:
                r = await c.post(f"{deployment.root}/v1/feedback", headers=admin_headers(),
                                 json={"trace_id": trace_id, "score": 1})  # fmt: skip
                assert r.status_code == 200, r.text
                return dict(r.json()), r.headers[REPLICA]

            return list(await asyncio.gather(*(one(i) for i, _ in answers)))

    given = asyncio.run(teach())
    assert all(g["learning"]["updated"] for g, _ in given)
    # Some feedback reached the other replica than the one that answered its request.
    assert any(a[1] != g[1] for a, g in zip(answers, given, strict=True))

    def saved() -> None:
        with engine.connect() as conn:
            state = conn.scalar(sa.text("SELECT state FROM router_state WHERE router = 'bandit'"))
        assert state is not None, "no replica has saved the router yet"
        arms = yaml.safe_load(state)["arms"]  # JSON is YAML
        # Last writer wins would keep one replica's share; merged, all 30 count once.
        assert sum(a["n"] for a in arms.values()) == 30
        assert sum(a["sum"] for a in arms.values()) == 30

    eventually(saved, timeout_s=20)
    engine.dispose()


def _all_stored(engine: sa.Engine, ids: list[str]) -> None:
    missing = set(ids) - set(_traces(engine))
    assert not missing, f"{len(missing)} answered requests have no trace yet"


Outcome = str | tuple[int, str | None] | Exception


async def _burst(root: str, secret: str, model: str, n: int) -> list[Outcome]:
    """n concurrent chat requests: each an answer's id, a refusal's (status, OpenAI error
    code), or the error (a connection cut)."""
    client = openai.AsyncOpenAI(base_url=f"{root}/v1", api_key=secret, max_retries=0, timeout=30)

    async def one() -> Outcome:
        try:
            answer = await client.chat.completions.create(
                model=model, messages=PROMPT, max_tokens=5
            )
            return answer.id
        except openai.APIStatusError as e:
            return e.status_code, e.code
        except openai.APIError as e:
            return e

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await client.close()


def _money(engine: sa.Engine, key_id: str) -> tuple[int, int, int, dict[str, int]]:
    """(spent, reserved, sum of usage rows' cost, cost by request id) of a key."""
    with engine.connect() as conn:
        spent, reserved = conn.execute(
            sa.text("SELECT spent_nusd, reserved_nusd FROM api_keys WHERE id = :id"),
            {"id": key_id},
        ).one()
        usage = dict(
            conn.execute(
                sa.text("SELECT request_id, cost_nusd FROM key_usage WHERE key_id = :id"),
                {"id": key_id},
            ).all()
        )
    return int(spent), int(reserved), sum(usage.values()), usage


def _traces(engine: sa.Engine) -> dict[str, float | None]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, cost_usd FROM requests")).all())


def test_a_budget_is_exact_across_replicas(deployment: Deployment) -> None:
    key = create_key(deployment.root, budget_usd=10 * COST_NUSD / 1e9)
    results = asyncio.run(_burst(deployment.root, key["secret"], "exact", 50))
    answered = [r for r in results if isinstance(r, str)]
    assert len(answered) == 10, results
    assert results.count((429, "budget_exceeded")) == 40
    engine = sa.create_engine(deployment.database_url)

    def settled() -> tuple[int, dict[str, float | None]]:
        spent, reserved, used, _ = _money(engine, key["id"])
        traces = _traces(engine)
        assert reserved == 0 and set(answered) <= set(traces)
        assert spent == used
        return spent, traces

    spent, traces = eventually(settled)
    assert spent == 10 * COST_NUSD
    assert sum(traces[i] or 0 for i in answered) == pytest.approx(spent / 1e9, abs=1e-12)
    engine.dispose()


def test_a_rate_limit_is_exact_across_replicas(deployment: Deployment) -> None:
    key = create_key(deployment.root, rpm=5)
    if time.time() % 60 > 55:  # the five must fall in one calendar minute
        time.sleep(61 - time.time() % 60)
    results = asyncio.run(_burst(deployment.root, key["secret"], "exact", 20))
    assert sum(isinstance(r, str) for r in results) == 5, results
    assert results.count((429, "rate_limit_exceeded")) == 15


def test_a_replica_killed_under_load_loses_no_trace_and_holds_no_budget(
    deployment: Deployment,
) -> None:
    key = create_key(deployment.root, budget_usd=1.0)
    victim = replica_pids()[0]

    engine = sa.create_engine(deployment.database_url)

    def held() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT count(*) FROM holds")))

    async def load_and_kill() -> list[Outcome]:
        burst = asyncio.ensure_future(_burst(deployment.root, key["secret"], "slow-exact", 30))
        # Killed once most requests are admitted (their reservations held) and in flight
        # upstream (each takes 2 s there).
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(held) < 24 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        return await burst

    results = asyncio.run(load_and_kill())
    answered = [r for r in results if isinstance(r, str)]
    failed = [r for r in results if not isinstance(r, str)]
    assert answered and failed, results  # the survivor answered; the victim's were cut off
    # Each of the victim's requests in flight is an OpenAI error from Ray's proxy (not its
    # plain-text 500), which the openai SDK's retries would send to a live replica.
    assert set(failed) == {(502, "replica_lost")}, failed

    def accounted() -> tuple[int, dict[str, int]]:
        spent, reserved, used, usage = _money(engine, key["id"])
        traces = _traces(engine)
        # No trace lost: every answer's trace reached the store, the victim's answers too
        # (its journal segment is replayed by the surviving writer).
        assert set(answered) <= set(traces)
        # No budget held: the victim's reservations were charged once they expired, each
        # with a usage row, so that the key's spend is its usage rows' sum.
        assert reserved == 0
        assert spent == used
        return spent, usage

    spent, usage = eventually(accounted, timeout_s=TTL_S + 20)
    assert all(usage[i] == COST_NUSD for i in answered)
    with engine.connect() as conn:
        expired = conn.scalar(sa.text(
            "SELECT count(*) FROM key_usage WHERE key_id = :id AND status = 0"), {"id": key["id"]}
        )  # fmt: skip
    # The victim had requests in flight: each was charged at its worst case, once.
    assert expired is not None and 1 <= expired <= len(failed)
    assert spent == COST_NUSD * (len(answered) + expired)
    engine.dispose()
    # The deployment answers on (the survivor, and the replica Ray starts in its place).
    answer = _client(deployment).chat.completions.create(model="exact", messages=PROMPT)
    assert answer.choices[0].message.content == "a b c d e"


def test_autoscaling_on_requests_in_flight_starts_the_second_replica(
    deployment: Deployment,
) -> None:
    """The same application, deployed again autoscaled between 1 and 2 replicas at one
    request in flight each: idle, Serve scales the two replicas it keeps down to one (after
    2 s), and load (8 two-second requests at a time) makes it start the second again. Last
    in the module: it leaves the deployment autoscaled."""
    done = subprocess.run(
        [*deployment.command, "--min-replicas", "1", "--max-replicas", "2",
         "--target-ongoing-requests", "1", "--upscale-delay-s", "0",
         "--downscale-delay-s", "2", "--look-back-period-s", "2"],
        env=deployment.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    eventually(lambda: _replicas(1), timeout_s=60)  # idle: scaled down to the minimum
    alone = replica_pids()

    answered_by: set[str] = set()

    async def load(until: float) -> None:
        async with httpx.AsyncClient(timeout=30) as c:

            async def loop() -> None:
                while time.monotonic() < until and len(answered_by) < 2:
                    r = await c.post(f"{deployment.root}/v1/chat/completions",
                                     headers=admin_headers(),
                                     json={"model": "slow-exact", "messages": PROMPT})  # fmt: skip
                    assert r.status_code == 200, r.text
                    answered_by.add(r.headers[REPLICA])

            await asyncio.gather(*(loop() for _ in range(8)))

    started = time.monotonic()
    asyncio.run(load(until=started + 90))
    assert len(answered_by) == 2, (
        f"no second replica answered in {time.monotonic() - started:.0f} s"
    )
    assert len(replica_pids()) == 2 and set(alone) < set(replica_pids())


def _replicas(n: int) -> None:
    assert len(replica_pids()) == n
