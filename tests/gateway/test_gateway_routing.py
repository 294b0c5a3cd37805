"""``model="auto"`` and named routers in the gateway, through the real openai client."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.config import Config
from polyroute.errors import ConfigError
from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "route me"}]


def routed_config(
    base_url: str,
    db_url: str,
    routers: dict[str, Any],
    default: str | None,
    models: tuple[str, ...] = ("echo", "renamed", "broken"),
) -> Config:
    """The echo upstream's models, keeping only those the routers may choose among."""
    raw = remote_config(base_url, db_url).model_dump()
    raw["models"] = [m for m in raw["models"] if m["name"] in models]
    raw["routers"] = routers
    raw["default_router"] = default
    return Config.model_validate(raw)


def test_auto_routes_answers_and_says_why(echo_upstream: EchoUpstream, db_url: str) -> None:
    cfg = routed_config(
        echo_upstream.base_url, db_url,
        {"spread": {"kind": "random", "seed": 1}, "wrr": {"kind": "wrr", "weights": {"echo": 1, "renamed": 1}}},
        "spread",
        models=("echo", "renamed"),
    )  # fmt: skip
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        ids = [m.id for m in client.models.list().data]
        assert "auto" in ids and "spread" in ids and "wrr" in ids

        raw = client.chat.completions.with_raw_response.create(model="auto", messages=USER)  # type: ignore[arg-type]
        r = raw.parse()
        assert raw.headers["x-polyroute-router"] == "spread"
        assert r.model == raw.headers["x-polyroute-model"]
        assert r.model in {m.name for m in cfg.models}
        assert raw.headers["x-polyroute-trace-id"] == r.id

        # A named router, streamed: smooth weighted round robin alternates the two models.
        models = []
        for _ in range(4):
            chunks = list(client.chat.completions.create(model="wrr", messages=USER, stream=True))  # type: ignore[arg-type]
            models.append(chunks[0].model)
            assert (
                "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
                == "route me"
            )
        assert sorted(models) == ["echo", "echo", "renamed", "renamed"]

    rows = Store(db_url).recent_requests()
    assert {r["router"] for r in rows} == {"spread", "wrr"}
    assert all(r["requested_model"] in ("auto", "wrr") for r in rows)


def test_a_failing_choice_falls_back_to_the_next_model(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    # Only two models are candidates: the broken one (upstream answers 500) and echo.
    cfg = routed_config(
        echo_upstream.base_url,
        db_url,
        {"pair": {"kind": "wrr", "weights": {"broken": 5, "echo": 1}}},
        "pair",
    )
    app = create_app(cfg)
    breaker = app.state.gateway.chat.breaker
    with serving(app) as base_url, httpx.Client() as http:
        r = http.post(f"{base_url}/chat/completions", json={"model": "auto", "messages": USER})
        assert r.status_code == 200
        assert r.json()["model"] == "echo"  # broken was tried first, failed, and echo answered
        # After a few consecutive failures broken's breaker opens ...
        for _ in range(20):
            if breaker.state("broken") == "open":
                break
            r = http.post(f"{base_url}/chat/completions", json={"model": "auto", "messages": USER})
            assert r.status_code == 200 and r.json()["model"] == "echo"
        assert breaker.state("broken") == "open"
        # ... and the next request does not try it at all.
        before = echo_upstream.stats.requests
        r = http.post(f"{base_url}/chat/completions", json={"model": "auto", "messages": USER})
        assert r.status_code == 200 and r.json()["model"] == "echo"
        assert echo_upstream.stats.requests == before + 1


def test_constraints_leave_no_model_is_a_clear_400(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = routed_config(
        echo_upstream.base_url, db_url, {"any": {"kind": "random"}}, "any", ("echo",)
    )
    # Written capabilities are the whole list: this model is known not to do tools.
    raw = cfg.model_dump()
    raw["models"][0]["capabilities"] = ["json_mode"]
    cfg = Config.model_validate(raw)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with serving(create_app(cfg)) as base_url, httpx.Client() as http:
        r = http.post(
            f"{base_url}/chat/completions", json={"model": "auto", "messages": USER, "tools": tools}
        )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "no_eligible_model"
    assert "echo: lacks tools" in error["message"]
    assert "capabilities: [tools]" in error["message"] and "catalog_id" in error["message"]


def test_router_config_errors_name_the_router(echo_upstream: EchoUpstream, db_url: str) -> None:
    with pytest.raises(ConfigError, match=r"routers\.r\.kind"):
        create_app(routed_config(echo_upstream.base_url, db_url, {"r": {"kind": "psychic"}}, "r"))
    with pytest.raises(ConfigError, match="default_router 'nope'"):
        create_app(routed_config(echo_upstream.base_url, db_url, {"r": {"kind": "random"}}, "nope"))


def test_decision_headers_are_json(echo_upstream: EchoUpstream, db_url: str) -> None:
    cfg = routed_config(
        echo_upstream.base_url, db_url, {"r": {"kind": "random", "seed": 3}}, "r", ("echo",)
    )
    with serving(create_app(cfg)) as base_url, httpx.Client() as http:
        r = http.post(f"{base_url}/chat/completions", json={"model": "r", "messages": USER})
    assert isinstance(json.loads(r.headers["x-polyroute-scores"]), dict)
