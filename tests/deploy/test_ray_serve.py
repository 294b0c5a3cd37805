"""Two gateway replicas on a real local Ray cluster, through Ray Serve's HTTP proxy.

One module-wide deployment (``polyroute ray serve --replicas 2 --detach`` on a ``ray start
--head`` cluster of 2 CPUs on 127.0.0.1), an echo upstream and a real PostgreSQL: the
openai SDK's plain and streamed chat, ``/v1/models``, ``auto``, feedback; a budget that fits
exactly ten requests across both replicas, and a rate limit of five a minute; and one replica killed with ``kill -9`` under
load, which loses no trace and leaves no reservation held.
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
from tests.auth.support import ADMIN, admin_headers, create_key, eventually
from tests.support.echo_upstream import EchoUpstream
from tests.support.ray_cluster import free_port, replica_pids, running_ray_cluster

if not os.environ.get("CI"):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install '.[ray]'")

pytestmark = [pytest.mark.ray, pytest.mark.e2e, pytest.mark.slow]

PROMPT = [{"role": "user", "content": "a b c d e"}]
COST_NUSD = 5 * 1000  # 5 output tokens at $1 per million: the worst case is the real cost
TTL_S = 3.0  # auth.reservation_ttl_s: a killed replica's reservations are charged after this


@dataclass(frozen=True)
class Deployment:
    root: str
    database_url: str
    journal: Path


def _config(upstream: str, database_url: str, journal: Path) -> dict[str, Any]:
    return {
        "store": {"database_url": database_url, "flush_interval_s": 0.05,
                  "journal_dir": str(journal)},
        "auth": {"cache_ttl_s": 0.2, "reservation_ttl_s": TTL_S, "rate_limits": "database"},
        "providers": {"up": {"kind": "openai", "base_url": upstream}},
        "models": [
            {"name": "exact", "provider": "up", "upstream_model": "echo",
             "input_price": 0.0, "output_price": 1.0},
            {"name": "slow-exact", "provider": "up", "upstream_model": "slow-2",
             "input_price": 0.0, "output_price": 1.0},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def deployment(echo_upstream: EchoUpstream, postgres_server: str) -> Iterator[Deployment]:
    import psycopg

    name = f"polyroute_ray_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    database_url = f"{base}/{name}"
    with running_ray_cluster(extra_env={"POLYROUTE_ADMIN_KEY": ADMIN}) as cluster:
        journal = cluster.temp_dir / "journal"  # one directory, shared by the node's replicas
        path = cluster.temp_dir / "polyroute.yaml"
        path.write_text(yaml.safe_dump(_config(echo_upstream.base_url, database_url, journal)))
        port = free_port()
        done = subprocess.run(
            [sys.executable, "-c", "from polyroute.cli.main import main; main()", "ray", "serve",
             "--config", str(path), "--replicas", "2", "--address", cluster.address,
             "--host", "127.0.0.1", "--port", str(port), "--detach"],
            env=cluster.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"http://127.0.0.1:{port}/v1" in done.stderr
        yield Deployment(f"http://127.0.0.1:{port}", database_url, journal)
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


async def _burst(root: str, secret: str, model: str, n: int) -> list[str | int | Exception]:
    """n concurrent chat requests: each an answer's id, a refusal's status, or the error."""
    client = openai.AsyncOpenAI(base_url=f"{root}/v1", api_key=secret, max_retries=0, timeout=30)

    async def one() -> str | int | Exception:
        try:
            answer = await client.chat.completions.create(
                model=model, messages=PROMPT, max_tokens=5
            )
            return answer.id
        except openai.APIStatusError as e:
            return e.status_code
        except openai.APIError as e:  # a connection cut by the killed replica
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
    assert results.count(429) == 40
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
    assert results.count(429) == 15


def test_a_replica_killed_under_load_loses_no_trace_and_holds_no_budget(
    deployment: Deployment,
) -> None:
    key = create_key(deployment.root, budget_usd=1.0)
    victim = replica_pids()[0]

    engine = sa.create_engine(deployment.database_url)

    def held() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT count(*) FROM holds")))

    async def load_and_kill() -> list[str | int | Exception]:
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
