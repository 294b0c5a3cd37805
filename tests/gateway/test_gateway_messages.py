"""``POST /v1/messages`` with the official ``anthropic`` SDK as the client, ``model="auto"``.

Once against an OpenAI-protocol upstream (the echo server) and once against an
Anthropic-protocol one (the fake Anthropic API): plain, streamed, and with a tool call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from tests.conftest import serving
from tests.support.anthropic_upstream import KEY, FakeAnthropic
from tests.support.asgi_server import serving_app
from tests.support.echo_upstream import EchoUpstream

from polyroute.config import Config
from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def echo_config(base_url: str, db_url: str) -> Config:
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "providers": {"up": {"api": "openai", "base_url": base_url}},
            "models": [
                {"name": "echo", "provider": "up", "input_price": 1.0, "output_price": 2.0,
                 "capabilities": ["tools"]},
                {"name": "echo-tools", "provider": "up", "upstream_model": "tools-echo",
                 "input_price": 1.0, "output_price": 2.0, "capabilities": ["tools"]},
            ],
            # auto: the upstream model that echoes, and calls the first tool when given tools.
            "routers": {"pick": {"kind": "wrr", "weights": {"echo-tools": 1}},
                        "plain": {"kind": "wrr", "weights": {"echo": 1}}},
            "default_router": "pick",
        }
    )  # fmt: skip


def anthropic_config(base_url: str, db_url: str) -> Config:
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "providers": {"anthropic": {"api": "anthropic", "base_url": base_url,
                                        "api_key_env": "FAKE_ANTHROPIC_KEY"}},
            "models": [
                {"name": "claude-sonnet-4-5", "provider": "anthropic"},
                {"name": "busy", "provider": "anthropic", "upstream_model": "overloaded"},
                {"name": "cut", "provider": "anthropic", "upstream_model": "stream-error"},
            ],
            "routers": {"only": {"kind": "wrr", "weights": {"claude-sonnet-4-5": 1}}},
        }
    )  # fmt: skip


@pytest.fixture
def echo_gateway(echo_upstream: EchoUpstream, db_url: str) -> Iterator[str]:
    with serving(create_app(echo_config(echo_upstream.base_url, db_url))) as url:
        yield url.removesuffix("/v1")


@pytest.fixture
def fake_anthropic() -> Iterator[tuple[FakeAnthropic, str]]:
    upstream = FakeAnthropic()
    with serving_app(upstream.app) as url:
        yield upstream, url


@pytest.fixture
def anthropic_gateway(
    fake_anthropic: tuple[FakeAnthropic, str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", KEY)
    with serving(create_app(anthropic_config(fake_anthropic[1], db_url))) as url:
        yield url.removesuffix("/v1")


def sdk(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0)


def test_plain_and_streamed_through_an_openai_upstream(echo_gateway: str, db_url: str) -> None:
    client = sdk(echo_gateway)
    raw = client.messages.with_raw_response.create(
        model="auto",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "the quick brown fox"}],
    )
    m = raw.parse()
    assert raw.headers["x-polyroute-router"] == "pick"
    assert m.model == "echo-tools" and m.role == "assistant" and m.stop_reason == "end_turn"
    assert m.content[0].type == "text" and m.content[0].text == "the quick brown fox"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 4)
    assert m.id == raw.headers["x-polyroute-trace-id"]  # what feedback refers to

    # A router named as the model, streamed.
    with client.messages.stream(
        model="plain", max_tokens=100, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.model == "echo"
    assert text.split() == ["one", "two", "three"]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 3)
    client.close()
    deadline = time.monotonic() + 10  # the recorder writes in the background
    while len(rows := Store(db_url).recent_requests()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {r["requested_model"] for r in rows} == {"auto", "plain"}
    assert all(r["status"] == 200 and r["cost_usd"] is not None for r in rows)
    assert len(rows) == 2


def test_tool_call_round_trip_through_an_openai_upstream(echo_gateway: str) -> None:
    client = sdk(echo_gateway)
    ask: Any = [{"role": "user", "content": "Paris"}]
    m = client.messages.create(model="auto", max_tokens=100, tools=[WEATHER], messages=ask)
    assert m.stop_reason == "tool_use"
    call = next(b for b in m.content if b.type == "tool_use")
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})

    follow: Any = [
        *ask,
        {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {"role": "user",
         "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]  # fmt: skip
    m2 = client.messages.create(model="auto", max_tokens=100, tools=[WEATHER], messages=follow)
    assert m2.content[0].type == "text" and m2.content[0].text == "sunny"

    with client.messages.stream(
        model="auto", max_tokens=100, tools=[WEATHER], messages=ask
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert (streamed.name, streamed.input) == ("get_weather", {"city": "Paris"})
    client.close()


def test_plain_streamed_and_tools_through_an_anthropic_upstream(
    anthropic_gateway: str, fake_anthropic: tuple[FakeAnthropic, str]
) -> None:
    client = sdk(anthropic_gateway)
    m = client.messages.create(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": "hello there"}]
    )
    assert m.model == "claude-sonnet-4-5" and m.content[0].text == "hello there"  # type: ignore[union-attr]
    assert fake_anthropic[0].bodies[-1]["max_tokens"] == 50

    with client.messages.stream(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": "a b c"}]
    ) as stream:
        assert "".join(stream.text_stream) == "a b c"

    ask: Any = [{"role": "user", "content": "Rome"}]
    with client.messages.stream(
        model="auto", max_tokens=50, tools=[WEATHER], messages=ask,
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:  # fmt: skip
        final = stream.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert (call.name, call.input, final.stop_reason) == (
        "get_weather",
        {"city": "Rome"},
        "tool_use",
    )
    assert fake_anthropic[0].bodies[-1]["tool_choice"] == {"type": "tool", "name": "get_weather"}

    follow: Any = [
        *ask,
        {"role": "assistant", "content": [b.model_dump() for b in final.content]},
        {"role": "user",
         "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "warm"}]},
    ]  # fmt: skip
    m2 = client.messages.create(model="auto", max_tokens=50, tools=[WEATHER], messages=follow)
    assert m2.content[0].text == "tool said: warm"  # type: ignore[union-attr]
    client.close()


def test_prompt_cache_marks_and_cache_usage_round_trip(
    anthropic_gateway: str, fake_anthropic: tuple[FakeAnthropic, str]
) -> None:
    client = sdk(anthropic_gateway)
    system: Any = [{"type": "text", "text": "w " * 30, "cache_control": {"type": "ephemeral"}}]
    ask: Any = [{"role": "user", "content": "hi"}]
    first = client.messages.create(model="auto", max_tokens=9, system=system, messages=ask)
    second = client.messages.create(model="auto", max_tokens=9, system=system, messages=ask)
    assert fake_anthropic[0].bodies[-1]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert (first.usage.input_tokens, first.usage.cache_creation_input_tokens) == (1, 30)
    assert (second.usage.input_tokens, second.usage.cache_read_input_tokens) == (1, 30)
    client.close()


def test_errors_are_anthropics_error_json(echo_gateway: str) -> None:
    client = sdk(echo_gateway)
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with httpx.Client() as http:
        r = http.post(f"{echo_gateway}/v1/messages", json={"model": "auto", "messages": []})
        assert r.status_code == 400
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in r.json()["error"]["message"]
        r = http.post(
            f"{echo_gateway}/v1/messages",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        server_tool = {"type": "web_search_20250305", "name": "web_search"}
        body = {"model": "auto", "max_tokens": 5, "tools": [server_tool],
                "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
        r = http.post(f"{echo_gateway}/v1/messages", json=body)
        assert r.status_code == 400 and "custom tools" in r.json()["error"]["message"]
    client.close()


def test_upstream_failures_reach_anthropic_clients_as_anthropic_errors(
    anthropic_gateway: str,
) -> None:
    client = sdk(anthropic_gateway)
    ask: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(model="busy", max_tokens=5, messages=ask)
    assert e.value.status_code == 502 and "overloaded_error" in str(e.value)
    assert e.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    # Mid-stream, after a 200: Anthropic's error event, which the SDK raises.
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(model="cut", max_tokens=5, messages=ask) as stream,
    ):
        for _ in stream:
            pass
    client.close()


def test_count_tokens_exact_from_anthropic_estimated_elsewhere(
    anthropic_gateway: str, echo_gateway: str, fake_anthropic: tuple[FakeAnthropic, str]
) -> None:
    ask: Any = [{"role": "user", "content": "one two three four"}]
    client = sdk(anthropic_gateway)
    raw = client.messages.with_raw_response.count_tokens(
        model="claude-sonnet-4-5", system="be brief", messages=ask
    )
    assert raw.parse().input_tokens == 6  # the fake's count: words
    assert raw.headers["x-polyroute-token-count"] == "exact"
    assert fake_anthropic[0].bodies[-1]["system"] == "be brief"
    client.close()

    client = sdk(echo_gateway)
    raw = client.messages.with_raw_response.count_tokens(model="auto", messages=ask)
    assert raw.parse().input_tokens == len("one two three four") // 4
    assert raw.headers["x-polyroute-token-count"] == "estimate"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=ask)
    client.close()
