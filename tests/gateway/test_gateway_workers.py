"""``polyroute serve --workers 2``, for real: one port, two gateway processes, one truth.

The gateway runs as ``polyroute serve`` does in production (uvicorn's supervisor, two
worker processes, each with its trace writer) against the echo upstream, with keys on, on
a SQLite file and on PostgreSQL. Each test sends its requests on fresh connections, which the kernel spreads
over both workers, and checks what must be exact across them: the answers, the totals on
``/metrics``, the traces in the database (each once), budgets and RPM limits, and what the
online router learned. The last test kills a worker and its writer with ``kill -9`` under
load: the other worker's writer stores what the dead one had journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml
from tests.auth.support import ADMIN, create_key, eventually
from tests.auth.test_auth_budget_concurrency import BUDGET_USD, COST_NUSD, PROMPT, _burst, _settled
from tests.support.echo_upstream import EchoUpstream
from tests.support.workers import serving_workers, worker_pids, writer_pids

from polyroute.store.rows import REQUEST_COLUMNS, decode_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USER = [{"role": "user", "content": "hello workers"}]


def _config(base_url: str, db_url: str) -> dict[str, Any]:
    return {
        "store": {"database_url": db_url, "flush_interval_s": 0.05},
        "auth": {"cache_ttl_s": 0.2, "rate_limits": "database"},
        "feedback": {"save_interval_s": 0.2},
        "providers": {"up": {"api": "openai", "base_url": base_url}},
        "models": [
            {"name": "echo", "provider": "up", "input_price": 1.0, "output_price": 2.0},
            {"name": "exact", "provider": "up", "upstream_model": "echo",
             "input_price": 0.0, "output_price": 1.0},
        ],
        "routers": {"bandit": {"kind": "ucb1", "exploration": 0.5}},
    }  # fmt: skip


class Workers:
    """The running two-worker gateway and what the tests need of it."""

    def __init__(self, root: str, supervisor: int, db_url: str, journal: Path) -> None:
        self.root, self.supervisor, self.db_url, self.journal = root, supervisor, db_url, journal
        self.engine = sa.create_engine(db_url)
        self.key = create_key(root)["secret"]  # no limits: for the tests that count

    def headers(self, secret: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {secret or self.key}"}

    def scrape(self) -> dict[str, float]:
        """``/metrics`` summed by series name (labels added up)."""
        text = httpx.get(f"{self.root}/metrics", headers=self.headers(ADMIN), timeout=10).text
        totals: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                name = series.split("{", 1)[0]
                if "status_class=" in series:
                    name += "{" + series.split('status_class="', 1)[1].split('"', 1)[0] + "}"
                totals[name] = totals.get(name, 0.0) + float(value)
        return totals

    def stored(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, status FROM requests")).all()
        return {r[0]: r[1] for r in rows}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def workers(
    request: pytest.FixtureRequest,
    echo_upstream: EchoUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workers]:
    tmp = tmp_path_factory.mktemp("workers")
    with _database(request, tmp) as db_url:
        config = _config(echo_upstream.base_url, db_url)
        config["store"]["journal_dir"] = str(tmp / "journal")
        path = tmp / "polyroute.yaml"
        path.write_text(yaml.safe_dump(config))
        with serving_workers(path, 2, env={"POLYROUTE_ADMIN_KEY": ADMIN}) as (root, proc):
            w = Workers(root, proc.pid, db_url, tmp / "journal")
            yield w
            w.engine.dispose()


@contextlib.contextmanager
def _database(request: pytest.FixtureRequest, tmp: Path) -> Iterator[str]:
    """A fresh database for the module: a SQLite file, or one on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp / 'polyroute.db'}"
        return
    import psycopg

    server = str(request.getfixturevalue("postgres_server"))
    name = f"polyroute_workers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _client(w: Workers, timeout: float = 30) -> openai.AsyncOpenAI:
    """The openai client on a connection per request, which either worker may accept."""
    fresh = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=timeout)
    return openai.AsyncOpenAI(
        base_url=f"{w.root}/v1", api_key=w.key, max_retries=0, http_client=fresh
    )


async def _many(w: Workers, n: int, *, concurrency: int = 16, model: str = "echo") -> list[str]:
    """``n`` chat completions through the openai client, half of them streamed."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: openai.AsyncOpenAI, i: int) -> str:
        async with gate:
            if i % 2:
                r = await client.chat.completions.create(model=model, messages=USER)
                assert r.choices[0].message.content == "hello workers"
                return r.id
            stream = await client.chat.completions.create(
                model=model, messages=USER, stream=True, stream_options={"include_usage": True}
            )
            text, usage, ident = "", None, ""
            async for chunk in stream:
                ident = chunk.id
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                usage = chunk.usage or usage
            assert text.strip() == "hello workers" and usage is not None
            return ident

    async with _client(w) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(n))))


def _segment_bytes_by_owner(journal: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for p in journal.glob("*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            owner = p.name.rpartition("-")[0]
            sizes[owner] = sizes.get(owner, 0) + p.stat().st_size
    return sizes


def test_both_workers_answer_and_metrics_and_traces_add_up(workers: Workers) -> None:
    w = workers
    before = w.scrape()
    ids = asyncio.run(_many(w, 80))
    # Each worker journaled some of them: each appends to a segment named after it.
    assert len([o for o, size in _segment_bytes_by_owner(w.journal).items() if size]) == 2

    def counted() -> dict[str, float]:
        now = w.scrape()
        assert (
            now["polyroute_requests_total{2xx}"] - before.get("polyroute_requests_total{2xx}", 0)
            == 80
        )
        assert (
            now["polyroute_recorder_journaled_total"]
            - before.get("polyroute_recorder_journaled_total", 0)
            == 80
        )
        assert now["polyroute_recorder_written_total"] == now["polyroute_recorder_journaled_total"]
        assert now["polyroute_recorder_queue_depth"] == 0
        assert now["polyroute_recorder_writer_up"] == 1
        return now

    now = eventually(counted, 20)
    assert now["polyroute_key_requests_total"] - before.get("polyroute_key_requests_total", 0) == 80
    stored = eventually(lambda: _all_in(w, ids), 20)
    assert all(stored[i] == 200 for i in ids)


def _all_in(w: Workers, ids: list[str]) -> dict[str, int]:
    stored = w.stored()
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} answered requests have no trace"
    return stored


def test_errors_are_openai_json_from_either_worker(workers: Workers) -> None:
    for _ in range(6):  # fresh connections: both workers answer some
        with httpx.Client(base_url=workers.root, headers=workers.headers(), timeout=10) as c:
            r = c.post("/v1/chat/completions", json={"model": "nonsense", "messages": USER})
            assert r.status_code == 404
            assert r.json()["error"]["type"] == "invalid_request_error"
            r = c.post(
                "/v1/chat/completions",
                content=b"{not json",
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 400 and "error" in r.json()
            assert c.get("/v1/models").json()["data"][0]["id"] == "echo"


def test_a_budget_of_ten_answers_exactly_ten_of_fifty_across_workers(workers: Workers) -> None:
    key = create_key(workers.root, budget_usd=BUDGET_USD)
    answered, refused = asyncio.run(_burst([workers.root] * 8, key["secret"]))
    assert len(answered) == 10
    assert len(refused) == 40
    spent, reserved, cost = _settled(workers.engine, key["id"], answered)
    assert reserved == 0
    assert spent == 10 * COST_NUSD
    assert spent / 1e9 == pytest.approx(cost, abs=1e-12)


def test_an_rpm_limit_is_exact_across_workers(workers: Workers) -> None:
    key = create_key(workers.root, rpm=7)

    async def burst() -> list[int]:
        async def one() -> int:
            async with httpx.AsyncClient(timeout=30) as c:  # a connection each
                r = await c.post(
                    f"{workers.root}/v1/chat/completions",
                    json={"model": "echo", "messages": PROMPT},
                    headers=workers.headers(key["secret"]),
                )
                if r.status_code == 429:
                    assert r.json()["error"]["code"] == "rate_limit_exceeded"
                return r.status_code

        return list(await asyncio.gather(*(one() for _ in range(30))))

    codes = asyncio.run(burst())
    assert codes.count(200) == 7
    assert codes.count(429) == 23


def test_feedback_on_both_workers_teaches_one_router(workers: Workers) -> None:
    w = workers
    ids = asyncio.run(_many(w, 30, model="bandit"))

    async def teach() -> list[dict[str, Any]]:
        async def one(trace_id: str) -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=30) as c:  # either worker takes it
                r = await c.post(
                    f"{w.root}/v1/feedback",
                    json={"trace_id": trace_id, "score": 1},
                    headers=w.headers(),
                )
                assert r.status_code == 200, r.text
                return dict(r.json())

        return list(await asyncio.gather(*(one(i) for i in ids)))

    eventually(lambda: _all_in(w, ids), 20)  # feedback on another worker reads the trace
    given = asyncio.run(teach())
    assert all(g["learning"]["updated"] for g in given)

    def saved() -> None:
        with w.engine.connect() as conn:
            state = conn.execute(
                sa.text("SELECT state FROM router_state WHERE router = 'bandit'")
            ).scalar_one_or_none()
        assert state is not None, "no worker has saved the router yet"
        arms = yaml.safe_load(state)["arms"]  # JSON is YAML
        # Last writer wins would keep one worker's share; merged, all 30 count once.
        assert sum(a["n"] for a in arms.values()) == 30
        assert sum(a["sum"] for a in arms.values()) == 30

    eventually(saved, 20)


def test_kill_9_of_a_worker_and_its_writer_under_load_loses_no_trace(workers: Workers) -> None:
    w = workers
    victim = worker_pids(w.supervisor)[0]
    writers = writer_pids(victim)
    answered: list[str] = []
    pending: set[str] = set()

    async def load() -> None:
        deadline = time.monotonic() + 4.0

        async def client_loop() -> None:
            async with _client(w, timeout=10) as client:
                while time.monotonic() < deadline:
                    try:
                        r = await client.chat.completions.create(model="echo", messages=USER)
                        answered.append(r.id)
                    except openai.APIError:
                        pass  # cut by the kill: the client knows it got no answer

        async def kill_soon() -> None:
            await asyncio.sleep(1.0)
            # The writer first: the worker goes on journaling what nobody stores ...
            for pid in writers:
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.6)  # (its recorder would start a new writer after 1 s)
            pending.update(_journaled(w.journal, victim) - set(w.stored()))
            os.kill(victim, signal.SIGKILL)  # ... and then it dies too

        await asyncio.gather(*(client_loop() for _ in range(8)), kill_soon())

    asyncio.run(load())
    assert len(answered) > 20
    assert pending  # the dead worker left traces in the journal that no writer had stored
    stored = eventually(lambda: _all_in(w, [*answered, *pending]), 30)
    assert all(stored[i] == 200 for i in answered)
    # Nothing of the dead worker is left in the journal: adopted, stored, deleted.
    eventually(lambda: _gone(w.journal, victim), 20)
    # uvicorn's supervisor started a new worker in its place; both serve again.
    pids = eventually(lambda: _two_new(w.supervisor, victim), 30)
    assert victim not in pids
    assert len(asyncio.run(_many(w, 10))) == 10


def _journaled(journal: Path, pid: int) -> set[str]:
    """The trace ids in the journal segments of worker ``pid``."""
    ids = set()
    for path in journal.glob(f"*-{pid}-*.jsonl"):
        for line in path.read_bytes().splitlines():
            ids.add(decode_line(line)[0][REQUEST_COLUMNS.index("id")])
    return ids


def _gone(journal: Path, pid: int) -> None:
    assert not list(journal.glob(f"*-{pid}-*.jsonl"))


def _two_new(supervisor: int, victim: int) -> list[int]:
    pids = worker_pids(supervisor)
    assert len(pids) == 2 and victim not in pids and all(writer_pids(p) for p in pids)
    return pids


def test_workers_refuse_an_in_memory_database(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "polyroute.yaml"
    path.write_text(yaml.safe_dump({"store": {"database_url": "sqlite://"}, "auth": "none"}))
    done = subprocess.run(
        [sys.executable, "-c", "from polyroute.cli.main import main; main()", "serve",
         "--config", str(path), "--workers", "2"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )  # fmt: skip
    assert done.returncode == 2
    assert "in memory" in done.stderr and "SQLite file or PostgreSQL" in done.stderr
