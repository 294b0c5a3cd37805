"""Agent traffic through the real gateway and the real openai client: tools and JSON on ``auto``.

The upstream is the echo server on 127.0.0.1, which calls the first tool it is given: in
OpenAI's chunk form (``tool-call``), or repeating the call's id and name in every chunk as
llama-cpp-python does (``tool-call-repeating``).
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream
from tests.traces.traces_support import wait_for_trace

from polyroute.config import Config
from polyroute.gateway import create_app
from polyroute.gateway.routing import build_router_hub

pytestmark = pytest.mark.e2e

WEATHER: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]
ASK: list[Any] = [{"role": "user", "content": "Do I need an umbrella in Paris?"}]


def agent_config(base_url: str, db_url: str, **models: dict[str, Any]) -> Config:
    """Two models of the user's own, no capabilities written, and a router over them."""
    raw = remote_config(base_url, db_url).model_dump(exclude_unset=True)
    raw["models"] = [{"name": n, "provider": "up", **m} for n, m in models.items()]
    raw["routers"] = {"pick": {"kind": "random", "seed": 7}}
    return Config.model_validate(raw)


def two_models(base_url: str, db_url: str, upstream: str = "tool-call") -> Config:
    return agent_config(
        base_url,
        db_url,
        small={"upstream_model": upstream, "input_price": 0.1, "output_price": 0.2},
        large={"upstream_model": upstream, "input_price": 1.0, "output_price": 4.0},
    )


def test_models_without_written_capabilities_are_unknown_not_lacking(db_url: str) -> None:
    cfg = agent_config(
        "http://127.0.0.1:9/v1",
        db_url,
        unknown={},
        listed={"capabilities": ["tools"]},  # written: the whole list
        told={"lacks": ["vision"]},
    )
    hub = build_router_hub(cfg)
    assert hub is not None
    found = {c.name: (c.capabilities, c.lacks) for c in hub.candidates(hub.routers["pick"])}
    assert found["unknown"] == (frozenset(), frozenset())
    assert found["listed"] == (frozenset({"tools"}), frozenset({"json_mode", "vision"}))
    assert found["told"] == (frozenset(), frozenset({"vision"}))
    # A config read back from its own dump means the same.
    again = Config.model_validate(cfg.model_dump())
    assert [m.lacks for m in again.models] == [m.lacks for m in cfg.models]


@pytest.mark.parametrize("stream", [False, True])
def test_auto_routes_a_tool_call_over_models_with_no_capabilities(
    echo_upstream: EchoUpstream, db_url: str, stream: bool
) -> None:
    with serving(create_app(two_models(echo_upstream.base_url, db_url))) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        if stream:
            with client.chat.completions.stream(
                model="auto", messages=ASK, tools=WEATHER
            ) as events:
                completion = events.get_final_completion()
        else:
            completion = client.chat.completions.create(model="auto", messages=ASK, tools=WEATHER)
        choice = completion.choices[0]
        assert completion.model in ("small", "large")
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id == "call_echo_1"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        trace = wait_for_trace(db_url, completion.id)
    decision = trace["decision"]
    assert decision["assumed"] == {"small": ["tools"], "large": ["tools"]}
    assert f"assumed {decision['model']} supports tools" in decision["reason"]


@pytest.mark.parametrize("stream", [False, True])
def test_auto_routes_a_json_request_over_models_with_no_capabilities(
    echo_upstream: EchoUpstream, db_url: str, stream: bool
) -> None:
    ask: list[Any] = [{"role": "user", "content": '{"answer": 42}'}]
    with serving(create_app(two_models(echo_upstream.base_url, db_url, "echo"))) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        before = len(echo_upstream.stats.bodies)
        kwargs: dict[str, Any] = {
            "model": "auto", "messages": ask, "response_format": {"type": "json_object"},
        }  # fmt: skip
        if stream:
            chunks = list(client.chat.completions.create(stream=True, **kwargs))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            model = chunks[0].model
        else:
            r = client.chat.completions.create(**kwargs)
            text, model = r.choices[0].message.content or "", r.model
    assert model in ("small", "large")
    assert json.loads(text) == {"answer": 42}
    # The upstream was asked for JSON, as the client asked.
    assert echo_upstream.stats.bodies[before]["response_format"] == {"type": "json_object"}


def test_a_repeating_upstream_reaches_the_client_in_openai_form(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = agent_config(
        echo_upstream.base_url,
        db_url,
        small={"upstream_model": "tool-call-repeating"},
        large={"upstream_model": "tool-call"},
    )
    with serving(create_app(cfg)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        chunks = list(
            client.chat.completions.create(model="small", messages=ASK, tools=WEATHER, stream=True)
        )
        # A stream already in OpenAI's form reaches the client as the upstream sent it.
        proper = list(
            client.chat.completions.create(model="large", messages=ASK, tools=WEATHER, stream=True)
        )
        with client.chat.completions.stream(model="small", messages=ASK, tools=WEATHER) as events:
            completion = events.get_final_completion()
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [d.id for d in deltas] == ["call_echo_1", None, None]
    assert [d.function.name if d.function else None for d in deltas] == ["get_weather", None, None]
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = [tc for c in proper if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [d.model_dump(exclude_none=True) for d in sent] == [
        {"index": 0, "id": "call_echo_1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        *({"index": 0, "function": {"arguments": a}} for a in ['{"city": ', '"Paris"', "}"]),
    ]  # fmt: skip


def test_a_model_known_to_lack_tools_is_skipped_and_the_other_is_assumed(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = agent_config(
        echo_upstream.base_url,
        db_url,
        plain={"upstream_model": "tool-call", "capabilities": ["json_mode"]},
        agent={"upstream_model": "tool-call"},
    )
    with serving(create_app(cfg)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        models = {
            client.chat.completions.create(model="auto", messages=ASK, tools=WEATHER).model
            for _ in range(6)
        }
        assert models == {"agent"}
        # Without tools, both serve.
        plain = client.chat.completions.create(model="plain", messages=ASK)
        assert plain.model == "plain"


def test_the_catalog_says_which_models_cannot_call_tools(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    # The bundled catalog (from LiteLLM) says yi-large does not do function calling.
    old = {"upstream_model": "tool-call", "catalog_id": "yi-large"}
    cfg = agent_config(
        echo_upstream.base_url, db_url, old=old, agent={"upstream_model": "tool-call"}
    )
    alone = agent_config(echo_upstream.base_url, db_url, old=old)
    with serving(create_app(cfg)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        models = {
            client.chat.completions.create(model="auto", messages=ASK, tools=WEATHER).model
            for _ in range(6)
        }
    assert models == {"agent"}
    with serving(create_app(alone)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="auto", messages=ASK, tools=WEATHER)
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "no_eligible_model"
    assert "old: lacks tools" in error["message"]
    assert "capabilities: [tools]" in error["message"] and "catalog_id" in error["message"]
