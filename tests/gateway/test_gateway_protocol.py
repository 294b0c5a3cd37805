"""The chat endpoint's contract: what it accepts, what it passes on, and its error bodies."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import remote_config

from polyroute.config import Config

BASE = "http://upstream.test/v1"


def fake_upstream(seen: list[dict[str, Any]]) -> httpx.MockTransport:
    """An upstream that records the bodies it gets and answers with fixed usage."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        body = orjson.loads(request.content)
        seen.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
            },
        )

    return httpx.MockTransport(handle)


def config(db_url: str, **provider: Any) -> Config:
    return remote_config(BASE, db_url, **provider)


USER = [{"role": "user", "content": "hello"}]


async def test_passes_common_parameters_and_tools_through(asgi_client: Any, db_url: str) -> None:
    seen: list[dict[str, Any]] = []
    client = await asgi_client(config(db_url), fake_upstream(seen))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    request = {
        "model": "renamed", "messages": USER, "temperature": 0.2, "max_tokens": 7, "stop": ["\n"],
        "n": 2, "tools": tools, "tool_choice": "auto", "response_format": {"type": "json_object"},
        "seed": 3, "some_vendor_field": {"kept": True},
    }  # fmt: skip
    r = await client.post("/v1/chat/completions", json=request)
    assert r.status_code == 200, r.text
    sent = seen[-1]["body"]
    assert seen[-1]["path"] == "/v1/chat/completions"
    assert sent["model"] == "echo-upstream-name"  # the upstream's own name
    for key in ("temperature", "max_tokens", "stop", "n", "tools", "tool_choice", "response_format", "seed", "some_vendor_field"):  # fmt: skip
        assert sent[key] == request[key], key
    assert r.json()["model"] == "renamed"  # clients see the name they asked for


async def test_api_key_comes_from_the_environment(
    asgi_client: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-test-123")
    seen: list[dict[str, Any]] = []
    client = await asgi_client(config(db_url, api_key_env="TEST_UPSTREAM_KEY"), fake_upstream(seen))
    r = await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER})
    assert r.status_code == 200
    assert seen[-1]["headers"]["authorization"] == "Bearer sk-test-123"


@pytest.mark.parametrize(
    ("content", "status", "needle", "param"),
    [
        (b"{not json", 400, "not valid JSON", None),
        (b"[1, 2]", 400, "must be a JSON object", None),
        (b"", 400, "empty", None),
        (orjson.dumps({"messages": USER}), 400, "Missing required parameter: 'model'", "model"),
        (orjson.dumps({"model": "echo"}), 400, "'messages'", "messages"),
        (orjson.dumps({"model": "echo", "messages": []}), 400, "'messages'", "messages"),
        (orjson.dumps({"model": "echo", "messages": USER, "temperature": "hot"}), 400, "'temperature'", "temperature"),
        (orjson.dumps({"model": "echo", "messages": USER, "temperature": 7}), 400, "'temperature'", "temperature"),
        (orjson.dumps({"model": "echo", "messages": USER, "stream": "yes"}), 400, "'stream'", "stream"),
        (orjson.dumps({"model": "echo", "messages": USER, "max_tokens": 0}), 400, "'max_tokens'", "max_tokens"),
        (orjson.dumps({"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}), 400, "'messages.0.role'", "messages.0.role"),
        (orjson.dumps({"model": "gpt-nope", "messages": USER}), 404, "'gpt-nope' does not exist", "model"),
    ],
)  # fmt: skip
async def test_bad_requests_get_openai_style_errors(
    asgi_client: Any, db_url: str, content: bytes, status: int, needle: str, param: str | None
) -> None:
    client = await asgi_client(config(db_url), fake_upstream([]))
    r = await client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code == status
    error = r.json()["error"]
    assert needle in error["message"]
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text


async def test_body_too_large_is_413(asgi_client: Any, db_url: str) -> None:
    cfg = config(db_url).model_copy(
        update={"server": Config().server.model_copy(update={"max_body_bytes": 1000})}
    )
    client = await asgi_client(cfg, fake_upstream([]))
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 5000}]}
    r = await client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert (
        "limit of 1000 bytes" in r.json()["error"]["message"]
        or "1000" in r.json()["error"]["message"]
    )


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ConnectError("refused"), 502, "upstream_unreachable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
        (httpx.ConnectTimeout("slow"), 502, "upstream_unreachable"),
    ],
)
async def test_network_failures_map_to_gateway_errors(
    asgi_client: Any, db_url: str, exc: Exception, status: int, code: str
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    client = await asgi_client(config(db_url), httpx.MockTransport(handle))
    for stream in (False, True):
        r = await client.post(
            "/v1/chat/completions", json={"model": "echo", "messages": USER, "stream": stream}
        )
        assert r.status_code == status
        assert r.json()["error"]["code"] == code
        assert "upstream up" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("upstream_status", "status", "code"),
    [(500, 502, "upstream_error"), (503, 503, "upstream_overloaded"), (429, 429, "rate_limit_exceeded"), (400, 400, None), (401, 502, "upstream_auth_failed"), (403, 502, "upstream_auth_failed")],
)  # fmt: skip
async def test_upstream_status_codes_are_mapped(
    asgi_client: Any, db_url: str, upstream_status: int, status: int, code: str | None
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(upstream_status, json={"error": {"message": "upstream says no"}})

    client = await asgi_client(config(db_url), httpx.MockTransport(handle))
    r = await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER})
    assert r.status_code == status
    body = r.json()["error"]
    assert "upstream says no" in body["message"]
    if code:
        assert body["code"] == code


async def test_models_and_health(asgi_client: Any, db_url: str) -> None:
    client = await asgi_client(config(db_url), fake_upstream([]))
    r = await client.get("/v1/models")
    assert r.status_code == 200
    ids = [m["id"] for m in r.json()["data"]]
    assert ids[:2] == ["echo", "renamed"]
    assert all(m["object"] == "model" for m in r.json()["data"])
    assert (await client.get("/v1/models/echo")).json()["id"] == "echo"
    assert (await client.get("/v1/models/nope")).status_code == 404
    health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["models"]["echo"] == {"ready": True, "detail": "ok", "circuit": "closed"}


async def test_health_reports_an_unreachable_upstream(asgi_client: Any, db_url: str) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = await asgi_client(config(db_url), httpx.MockTransport(handle))
    r = await client.get("/health")
    assert r.status_code == 503
    assert r.json()["models"]["echo"]["ready"] is False
    assert "unreachable" in r.json()["models"]["echo"]["detail"]


async def test_unknown_route_is_json_404(asgi_client: Any, db_url: str) -> None:
    client = await asgi_client(config(db_url), fake_upstream([]))
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert "Unknown request URL" in r.json()["error"]["message"]


async def test_every_request_is_recorded_with_tokens_cost_and_errors(
    asgi_client: Any, db_url: str
) -> None:
    client = await asgi_client(config(db_url), fake_upstream([]))
    gateway = client.gateway
    assert (
        await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER})
    ).status_code == 200
    assert (
        await client.post("/v1/chat/completions", json={"model": "renamed", "messages": USER})
    ).status_code == 200
    assert (
        await client.post("/v1/chat/completions", json={"model": "missing", "messages": USER})
    ).status_code == 404
    await gateway.recorder.flush()
    rows = {r["requested_model"]: r for r in gateway.store.recent_requests()}
    echo = rows["echo"]
    assert (echo["model"], echo["provider"], echo["upstream_model"], echo["status"]) == (
        "echo",
        "up",
        "echo",
        200,
    )
    assert (echo["input_tokens"], echo["output_tokens"]) == (1000, 500)
    # 1000 input tokens at $1/M + 500 output tokens at $2/M
    assert echo["cost_usd"] == pytest.approx(0.002)
    assert echo["cost_status"] == "known"
    assert echo["latency_ms"] > 0 and echo["error"] is None
    # No price configured: unknown, never $0.
    assert rows["renamed"]["cost_usd"] is None and rows["renamed"]["cost_status"] == "unknown"
    assert rows["missing"]["status"] == 404 and "does not exist" in rows["missing"]["error"]


async def test_catalog_prices_a_model_the_config_does_not_price(
    asgi_client: Any, db_url: str
) -> None:
    cfg = Config.model_validate(
        {
            "store": {"database_url": db_url},
            "providers": {"openai": {"api": "openai", "base_url": "https://api.openai.com/v1"}},
            "models": [{"name": "gpt-4o-mini", "provider": "openai"}],
        }
    )

    def handle(request: httpx.Request) -> httpx.Response:
        usage = {
            "prompt_tokens": 2000,
            "completion_tokens": 1000,
            "prompt_tokens_details": {"cached_tokens": 1000},
        }
        choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}}
        return httpx.Response(200, json={"choices": [choice], "usage": usage})

    client = await asgi_client(cfg, httpx.MockTransport(handle))
    card = (await client.get("/v1/models/gpt-4o-mini")).json()
    assert card["pricing"] == {"input": 0.15, "output": 0.6, "cached_input": 0.075}
    assert card["context_window"] >= 128_000
    r = await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER})
    assert r.status_code == 200
    await client.gateway.recorder.flush()
    row = client.gateway.store.recent_requests()[0]
    # 1000 uncached input at $0.15/M + 1000 cached at $0.075/M + 1000 output at $0.60/M
    assert row["cost_usd"] == pytest.approx((1000 * 0.15 + 1000 * 0.075 + 1000 * 0.6) / 1e6)
    assert row["cost_status"] == "known" and row["cached_tokens"] == 1000


async def test_a_bug_on_the_chat_path_is_a_500_json_error_without_traceback(
    asgi_client: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chat route is served ahead of FastAPI's middleware: it must map errors the same.
    client = await asgi_client(config(db_url), fake_upstream([]))

    def broken(_name: str) -> Any:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(client.gateway.pool, "resolve", broken)
    r = await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER})
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert "internal detail" not in r.text


async def test_the_chat_route_also_answers_under_a_root_path(asgi_client: Any, db_url: str) -> None:
    # Behind a proxy that strips a prefix (uvicorn --root-path), FastAPI's routing serves it.
    client = await asgi_client(config(db_url), fake_upstream([]))
    client._transport = httpx.ASGITransport(app=client._transport.app, root_path="/gw")
    r = await client.post("/gw/v1/chat/completions", json={"model": "echo", "messages": USER})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hi"
    r = await client.post("/gw/v1/chat/completions", json={"model": "nope", "messages": USER})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
