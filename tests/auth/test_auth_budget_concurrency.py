"""Budgets are exact under concurrency: 50 requests at once on a budget that fits 10.

Each request asks "a b c d e" with max_tokens=5 on a model whose input is free and whose
output costs $1 per million tokens, so its worst case ($0.000005) is its real cost, and a
$0.00005 budget fits exactly ten. On SQLite in one gateway process, and on PostgreSQL with
two gateway processes sharing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml
from tests.auth.support import ADMIN, admin_headers, auth_config, create_key
from tests.conftest import REPO, serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMPT = [{"role": "user", "content": "a b c d e"}]
COST_NUSD = 5 * 1000  # 5 output tokens at 1000 nano-USD each
BUDGET_USD = 10 * COST_NUSD / 1e9


async def _burst(roots: list[str], secret: str, n: int = 50) -> tuple[list[str], list[int]]:
    """n concurrent chat requests spread over the gateways; (answered ids, refusal codes)."""
    clients = [
        openai.AsyncOpenAI(base_url=f"{r}/v1", api_key=secret, max_retries=0, timeout=30)
        for r in roots
    ]

    async def one(i: int) -> str | int:
        try:
            answer = await clients[i % len(clients)].chat.completions.create(
                model="exact", messages=PROMPT, max_tokens=5
            )
            return answer.id
        except openai.RateLimitError as e:
            assert e.response.json()["error"]["code"] == "budget_exceeded"
            return 429

    results = await asyncio.gather(*(one(i) for i in range(n)))
    for c in clients:
        await c.close()
    return [r for r in results if isinstance(r, str)], [r for r in results if isinstance(r, int)]


def _settled(engine: sa.Engine, key_id: str, answered: list[str]) -> tuple[int, int, float]:
    """(spent, reserved) of the key once every settlement landed, and the answers' cost."""
    deadline = time.monotonic() + 20
    while True:
        with engine.connect() as conn:
            spent, reserved = conn.execute(
                sa.text("SELECT spent_nusd, reserved_nusd FROM api_keys WHERE id = :id"),
                {"id": key_id},
            ).one()
            costs = conn.execute(
                sa.text("SELECT id, cost_usd FROM requests WHERE status = 200")
            ).all()
        recorded = {r[0]: r[1] for r in costs}
        if (reserved == 0 and set(answered) <= set(recorded)) or time.monotonic() > deadline:
            return int(spent), int(reserved), sum(recorded[i] for i in answered if i in recorded)
        time.sleep(0.1)


def test_fifty_at_once_on_sqlite_exactly_ten_answered(
    echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    with serving(create_app(auth_config(echo_upstream.base_url, db_url))) as base_url:
        root = base_url.removesuffix("/v1")
        key = create_key(root, budget_usd=BUDGET_USD)
        answered, refused = asyncio.run(_burst([root], key["secret"]))
        assert len(answered) == 10
        assert len(refused) == 40
        spent, reserved, cost = _settled(sa.create_engine(db_url), key["id"], answered)
    assert reserved == 0
    assert spent == 10 * COST_NUSD
    assert spent / 1e9 == pytest.approx(cost, abs=1e-12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _gateway_process(config: Path, port: int) -> Iterator[str]:
    """``polyroute serve`` in its own process; yield its root URL once it answers."""
    env = {**os.environ, "POLYROUTE_ADMIN_KEY": ADMIN, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from polyroute.cli.main import main; main()", "serve", "--config", str(config),
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{root}/health/live", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"gateway process did not start:\n{out[-3000:]}")
            time.sleep(0.1)
        yield root
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_fifty_at_once_on_postgresql_across_two_gateway_processes(
    echo_upstream: EchoUpstream, postgres_url: str, tmp_path: Path
) -> None:
    config = auth_config(echo_upstream.base_url, postgres_url).model_dump(mode="json")
    path = tmp_path / "polyroute.yaml"
    path.write_text(yaml.safe_dump(config))
    with (
        _gateway_process(path, _free_port()) as one,
        _gateway_process(path, _free_port()) as two,
    ):
        key = create_key(one, budget_usd=BUDGET_USD)
        answered, refused = asyncio.run(_burst([one, two], key["secret"]))
        assert len(answered) == 10
        assert len(refused) == 40
        spent, reserved, cost = _settled(sa.create_engine(postgres_url), key["id"], answered)
        shown = httpx.get(f"{two}/admin/keys/{key['id']}", headers=admin_headers()).json()
    assert reserved == 0
    assert spent == 10 * COST_NUSD
    assert spent / 1e9 == pytest.approx(cost, abs=1e-12)
    assert shown["spend"]["by_model"]["exact"]["requests"] == 10
