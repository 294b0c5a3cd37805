"""The ``anthropic`` provider: the real openai SDK → a real gateway → a fake Anthropic API.

The fake (tests/support/anthropic_upstream.py) checks requests as Anthropic's reference
says the API does, so a translation mistake fails here as it would against the real one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from tests.conftest import serving
from tests.support.anthropic_upstream import KEY, FakeAnthropic
from tests.support.asgi_server import serving_app

from polyroute.config import Config
from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeAnthropic, str]]:
    upstream = FakeAnthropic()
    with serving_app(upstream.app) as url:
        yield upstream, url


def config(url: str, db_url: str) -> Config:
    # Named "anthropic", so the catalog's Anthropic prices (with cache writes) apply.
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "providers": {
                "anthropic": {
                    "api": "anthropic",
                    "base_url": url,
                    "api_key_env": "FAKE_ANTHROPIC_KEY",
                }
            },
            "models": [
                {"name": "claude-sonnet-4-5", "provider": "anthropic"},
                {
                    "name": "overloaded",
                    "provider": "anthropic",
                    "input_price": 1,
                    "output_price": 1,
                },
                {
                    "name": "broken-stream",
                    "provider": "anthropic",
                    "upstream_model": "stream-error",
                },
                {"name": "cut-stream", "provider": "anthropic", "upstream_model": "stream-cut"},
            ],
        }
    )


@pytest.fixture
def client(
    fake: tuple[FakeAnthropic, str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[openai.OpenAI]:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", KEY)
    with serving(create_app(config(fake[1], db_url))) as base_url:
        yield openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def test_plain_answer_usage_and_cost(
    client: openai.OpenAI, fake: tuple[FakeAnthropic, str], db_url: str
) -> None:
    r = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "the quick brown fox"},
        ],
        temperature=1.5,
        stop=["never"],
    )
    assert r.choices[0].message.content == "the quick brown fox"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "claude-sonnet-4-5"
    sent = fake[0].bodies[-1]
    assert sent["system"] == [{"type": "text", "text": "be brief"}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "the quick brown fox"}]}
    ]
    assert sent["max_tokens"] == 4096 and sent["temperature"] == 1.0
    assert sent["stop_sequences"] == ["never"]
    assert fake[0].headers[-1]["anthropic-version"] == "2023-06-01"
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (6, 4)


def test_prompt_cache_tokens_are_reported_and_priced(
    client: openai.OpenAI, fake: tuple[FakeAnthropic, str], db_url: str
) -> None:
    system = [
        {
            "type": "text",
            "text": "a long cached preamble " * 5,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": "hi there"}]
    first = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    second = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    assert fake[0].bodies[-1]["system"][0]["cache_control"] == {"type": "ephemeral"}
    for r in (first, second):
        assert r.usage is not None and r.usage.prompt_tokens == 22  # 20 cached + 2 fresh
    d1, d2 = first.usage.prompt_tokens_details, second.usage.prompt_tokens_details  # type: ignore[union-attr]
    assert d1 is not None and d2 is not None
    assert (d1.cached_tokens, getattr(d1, "cache_write_tokens", None)) == (0, 20)
    assert (d2.cached_tokens, getattr(d2, "cache_write_tokens", None)) == (20, 0)
    client.close()


def test_costs_recorded_with_cache_prices(
    fake: tuple[FakeAnthropic, str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", KEY)
    system = [
        {
            "type": "text",
            "text": "one more cached preamble " * 5,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": "hi there"}]
    with serving(create_app(config(fake[1], db_url))) as base_url:
        c = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        c.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
        c.chat.completions.create(model="claude-sonnet-4-5", messages=messages, stream=True)
    rows = sorted(Store(db_url).recent_requests(), key=lambda r: r["stream"])
    # claude-sonnet-4-5 at Anthropic: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
    written = (2 * 3.0 + 20 * 3.75 + 2 * 15.0) / 1e6
    read = (2 * 3.0 + 20 * 0.3 + 2 * 15.0) / 1e6
    assert [r["cost_usd"] for r in rows] == [pytest.approx(written), pytest.approx(read)]
    assert [r["cached_tokens"] for r in rows] == [0, 20]
    assert all(r["cost_status"] == "known" and r["input_tokens"] == 22 for r in rows)


def test_streamed_answer_in_openais_chunk_format(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 3)


def test_tool_call_and_tool_result_round_trip(
    client: openai.OpenAI, fake: tuple[FakeAnthropic, str]
) -> None:
    ask: Any = [{"role": "user", "content": "Paris"}]
    r = client.chat.completions.create(model="claude-sonnet-4-5", messages=ask, tools=[WEATHER])  # type: ignore[list-item]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Calling a tool."
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert fake[0].bodies[-1]["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]  # type: ignore[index]

    # The assistant's tool call and the tool's result go back as tool_use and tool_result.
    follow: Any = [
        *ask,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    r2 = client.chat.completions.create(model="claude-sonnet-4-5", messages=follow, tools=[WEATHER])  # type: ignore[list-item]
    assert r2.choices[0].message.content == "tool said: sunny, 21C"
    sent = fake[0].bodies[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}
    ]


def test_streamed_tool_call_sends_id_and_name_once(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": "Lyon"}],
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 2  # the arguments came in pieces
    assert deltas[0].id and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert all(d.id is None and d.function.name is None for d in deltas[1:])  # type: ignore[union-attr]
    arguments = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "Lyon"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_json_schema_comes_back_as_the_message_text(
    client: openai.OpenAI, fake: tuple[FakeAnthropic, str]
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    r = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "42"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert json.loads(r.choices[0].message.content or "") == {"answer": "42"}
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert fake[0].bodies[-1]["tool_choice"] == {"type": "tool", "name": "json_response"}


def test_images_as_data_urls_and_urls(client: openai.OpenAI) -> None:
    content: Any = [
        {"type": "text", "text": "what is"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    r = client.chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": content}]
    )
    assert (
        r.choices[0].message.content
        == "what is [image image/png] [image https://example.com/cat.jpg]"
    )


def test_stop_reasons_map_to_finish_reasons(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "a b c d e"}]
    r = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, max_tokens=2)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("a b", "length")
    r = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, stop="c")
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("a b", "stop")


def test_overloaded_is_a_retryable_upstream_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="overloaded", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 502
    assert "529" in str(e.value) and "overloaded_error" in str(e.value)


def test_unsupported_input_is_a_400_not_a_silent_drop(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="n > 1"):
        client.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}], n=2
        )


def test_an_error_event_mid_stream_is_reported_in_band(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError, match="overloaded_error"):
        list(
            client.chat.completions.create(
                model="broken-stream",
                messages=[{"role": "user", "content": "x"}],
                tools=[WEATHER],  # type: ignore[list-item]
                stream=True,
            )
        )


def test_a_stream_cut_before_message_stop_is_an_error_not_an_answer(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError, match="before message_stop"):
        list(
            client.chat.completions.create(
                model="cut-stream", messages=[{"role": "user", "content": "x y"}], stream=True
            )
        )
