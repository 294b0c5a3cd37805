"""Engines in the gateway, with a small real engine process: weights fetched at start-up from
a local HTTP server (provenance on /health), a wrong hash keeping only that model down,
routers seeing a down engine as unhealthy, scale-to-zero woken by a request."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.file_server import FileServer, running_file_server
from typer.testing import CliRunner

from polyroute.cli.main import app as cli
from polyroute.config import Config

TINY = Path(__file__).resolve().parents[1] / "support" / "tiny_engine.py"
DATA = os.urandom(200_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def files() -> Iterator[FileServer]:
    with running_file_server() as s:
        s.files["/tiny.gguf"] = DATA
        yield s


def _config(tmp_path: Path, url: str, sha256: str, **engine: Any) -> Config:
    return Config.model_validate(
        {
            "store": {"database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
            "weights": {"dir": str(tmp_path / "weights")},
            "models": [
                {
                    "name": "tiny",
                    "engine": {"kind": "llama_cpp_server", "command": [sys.executable, str(TINY)],
                               "health_interval_s": 0.1, "backoff_s": 0.05, **engine},
                    "weights": url, "sha256": sha256, "input_price": 0, "output_price": 0,
                },
            ],
        }
    )  # fmt: skip


async def _until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_weights_are_fetched_at_start_up_and_their_provenance_is_on_health(
    asgi_client: Any, files: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="polyroute.engines")
    client = await asgi_client(_config(tmp_path, f"{files.url}/tiny.gguf", SHA))
    body = (await client.get("/health")).json()
    assert body["engines"]["tiny"]["state"] == "ready"
    command = body["engines"]["tiny"]["command"]
    assert command[command.index("--model") + 1] == str(tmp_path / "weights" / "blobs" / SHA)
    assert body["weights"]["tiny"]["sha256"] == SHA
    assert body["weights"]["tiny"]["source"] == f"{files.url}/tiny.gguf"
    assert any("100% of 0.2 MB" in r.getMessage() for r in caplog.records)  # progress shown
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == f"pid {body['engines']['tiny']['pid']}"
    # The file is in use while the engine runs: the store will not remove it.
    r2 = CliRunner().invoke(cli, ["weights", "rm", SHA, "--dir", str(tmp_path / "weights")])
    assert r2.exit_code == 1 and "in use" in r2.output


async def test_a_wrong_hash_keeps_the_model_down_with_both_hashes(
    asgi_client: Any, files: FileServer, tmp_path: Path
) -> None:
    client = await asgi_client(_config(tmp_path, f"{files.url}/tiny.gguf", "e" * 64))
    r = await client.get("/health")
    assert r.status_code == 503
    engine = r.json()["engines"]["tiny"]
    assert engine["state"] == "down"
    assert f"sha256 {SHA}, expected {'e' * 64}" in engine["detail"]
    assert not client.gateway.routers.health.healthy("tiny")
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "engine_unavailable"


async def test_routers_see_an_engine_that_is_not_serving_as_unhealthy(
    asgi_client: Any, files: FileServer, tmp_path: Path
) -> None:
    client = await asgi_client(_config(tmp_path, f"{files.url}/tiny.gguf", SHA))
    health = client.gateway.routers.health
    process = client.gateway.engines.processes["tiny"]
    assert health.healthy("tiny")
    os.kill(process.pid, 9)
    await _until(lambda: process.state != "ready")
    assert not health.healthy("tiny")
    await _until(lambda: process.state == "ready")
    assert health.healthy("tiny")
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200 and r.json()["model"] == "tiny"


async def test_an_idle_engine_is_started_by_the_next_request(
    asgi_client: Any, files: FileServer, tmp_path: Path
) -> None:
    client = await asgi_client(_config(tmp_path, f"{files.url}/tiny.gguf", SHA, idle_timeout_s=0.3))
    process = client.gateway.engines.processes["tiny"]
    await _until(lambda: process.state == "idle" and process.pid is None)
    body = (await client.get("/health")).json()
    assert body["engines"]["tiny"]["pid"] is None and body["models"]["tiny"]["ready"]
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200, r.text
    assert process.state == "ready" and process.pid is not None


def test_engines_commands_prints_each_command_line_without_starting_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models:\n"
        "  - {name: q, engine: {kind: vllm, port: 8200, args: {max_model_len: 4096}}, path: /models/q}\n"
        "  - {name: o, engine: {kind: ollama, port: 11500}, upstream_model: 'llama3.2:1b'}\n"
    )
    r = CliRunner().invoke(cli, ["engines", "--commands", str(cfg)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert (
        "q: vllm serve /models/q --host 127.0.0.1 --port 8200 --served-model-name q --max-model-len 4096"
        in r.output
    )
    assert "o: OLLAMA_HOST=127.0.0.1:11500 ollama serve" in r.output
