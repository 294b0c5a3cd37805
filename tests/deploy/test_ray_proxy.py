"""The middleware polyroute puts in Ray Serve's HTTP proxy, on plain ASGI apps (no cluster).

Ray's proxy app returns without a response when the replica holding a request dies; the
end-to-end kill test (tests/deploy/test_ray_serve.py) shows that through a real proxy.
"""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from polyroute.deploy.ray_proxy import CALLBACK, NoAnswerIsAnError, middlewares


async def _silent(scope: Scope, receive: Receive, send: Send) -> None:
    """What Ray's proxy does when the replica died: nothing sent, no error raised."""


async def _answers(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _started_then_fails(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("cut mid-stream")


async def _get(app: NoAnswerIsAnError) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
        return await c.post("/v1/chat/completions", json={})


async def test_no_answer_from_the_replica_is_an_openai_error() -> None:
    r = await _get(NoAnswerIsAnError(_silent))
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == "replica_lost" and error["type"] == "server_error"
    assert "Retry" in error["message"]


async def test_an_answer_passes_unchanged_and_a_started_one_is_not_rewritten() -> None:
    r = await _get(NoAnswerIsAnError(_answers))
    assert (r.status_code, r.text) == (200, "ok")
    with pytest.raises(RuntimeError, match="cut mid-stream"):
        await _get(NoAnswerIsAnError(_started_then_fails))


def test_the_callback_serve_imports_gives_starlette_middleware() -> None:
    """Serve's own loader (Ray 2.60's private helpers: the test breaks if they change)."""
    pytest.importorskip("ray.serve")
    from ray.serve._private.http_util import validate_http_proxy_callback_return
    from ray.serve._private.utils import call_function_from_import_path

    found = validate_http_proxy_callback_return(call_function_from_import_path(CALLBACK))
    assert [m.cls for m in found] == [m.cls for m in middlewares()] == [NoAnswerIsAnError]
