"""Shared fixtures: configs, a real echo upstream on 127.0.0.1, and a real gateway server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import settings
from tests.support.echo_upstream import EchoUpstream, running_echo_upstream
from tests.support.postgres import postgres_server, postgres_url, store_url  # noqa: F401
from tests.support.redis import redis_server, redis_url  # noqa: F401

from polyroute.config import Config
from polyroute.gateway import create_app

# Property tests check properties, not speed: a loaded CI machine must not fail them on
# hypothesis's default 200 ms deadline (speed goals live in benchmarks/).
settings.register_profile("polyroute", deadline=None)
settings.load_profile("polyroute")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests keep their data (default databases, trace journals) out of the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
        yield


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'polyroute.db'}"


def remote_config(base_url: str, db_url: str, **provider: Any) -> Config:
    """A config with one OpenAI-compatible provider ``up`` and a few models on it."""
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "providers": {"up": {"api": "openai", "base_url": base_url, **provider}},
            "models": [
                {"name": "echo", "provider": "up", "input_price": 1.0, "output_price": 2.0},
                {"name": "renamed", "provider": "up", "upstream_model": "echo-upstream-name"},
                {"name": "broken", "provider": "up", "upstream_model": "fail-500"},
                {"name": "limited", "provider": "up", "upstream_model": "fail-429"},
                {"name": "refused", "provider": "up", "upstream_model": "fail-400"},
                {"name": "slow", "provider": "up", "upstream_model": "slow-5"},
                {"name": "hang", "provider": "up", "upstream_model": "stream-then-hang"},
            ],
        }
    )


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[EchoUpstream]:
    with running_echo_upstream() as upstream:
        yield upstream


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on a free 127.0.0.1 port; yield its /v1 URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # loading local models can take a while
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
async def asgi_client() -> AsyncIterator[Callable[..., Any]]:
    """Build an in-process client for an app, running its startup and shutdown."""
    stack = contextlib.AsyncExitStack()

    async def make(config: Config, transport: httpx.AsyncBaseTransport | None = None) -> Any:
        app = create_app(config, transport=transport)
        gateway = app.state.gateway
        await gateway.start()
        stack.push_async_callback(gateway.stop)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        )
        stack.push_async_callback(client.aclose)
        client.gateway = gateway  # type: ignore[attr-defined]
        return client

    async with stack:
        yield make
