"""The ``gemini`` provider: the real openai SDK → a real gateway → a fake Gemini API.

The fake (tests/support/gemini_upstream.py) refuses what the real API refuses (unknown
fields, schema keys outside its subset, unanswered function calls), so a translation
mistake fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from tests.conftest import serving
from tests.support.asgi_server import serving_app
from tests.support.gemini_upstream import KEY, FakeGemini

from polyroute.config import Config
from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,  # OpenAI's strict mode; Gemini refuses the key
        },
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeGemini, str]]:
    upstream = FakeGemini()
    with serving_app(upstream.app) as url:
        yield upstream, url


def config(url: str, db_url: str) -> Config:
    # Named "gemini", so the catalog's Gemini prices apply.
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "providers": {"gemini": {"api": "gemini", "base_url": f"{url}/v1beta",
                                     "api_key_env": "FAKE_GEMINI_KEY"}},
            "models": [
                {"name": "gemini-2.5-flash", "provider": "gemini"},
                {"name": "busy", "provider": "gemini", "upstream_model": "overloaded"},
                {"name": "limited", "provider": "gemini"},
                {"name": "cut", "provider": "gemini", "upstream_model": "stream-cut"},
            ],
        }
    )  # fmt: skip


@pytest.fixture
def gateway(
    fake: tuple[FakeGemini, str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[openai.OpenAI]:
    monkeypatch.setenv("FAKE_GEMINI_KEY", KEY)
    with serving(create_app(config(fake[1], db_url))) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        yield client
        client.close()


def test_plain_answer_system_and_generation_config(
    gateway: openai.OpenAI, fake: tuple[FakeGemini, str]
) -> None:
    r = gateway.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "the quick brown fox"},
        ],
        temperature=0.2,
        max_tokens=50,
        stop="never",
    )
    assert r.choices[0].message.content == "the quick brown fox"
    assert r.choices[0].finish_reason == "stop"
    sent = fake[0].bodies[-1]
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "the quick brown fox"}]}]
    assert sent["generationConfig"] == {
        "temperature": 0.2,
        "maxOutputTokens": 50,
        "stopSequences": ["never"],
    }
    assert fake[0].urls[-1].endswith("/v1beta/models/gemini-2.5-flash:generateContent")
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (6, 4)


def test_streamed_answer_and_usage(gateway: openai.OpenAI, fake: tuple[FakeGemini, str]) -> None:
    chunks = list(
        gateway.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert fake[0].urls[-1].endswith(":streamGenerateContent?alt=sse")


def test_tool_call_and_function_response(
    gateway: openai.OpenAI, fake: tuple[FakeGemini, str]
) -> None:
    ask: Any = [{"role": "user", "content": "Oslo"}]
    r = gateway.chat.completions.create(
        model="gemini-2.5-flash", messages=ask, tools=[WEATHER], tool_choice="required"
    )
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and call.id  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    sent = fake[0].bodies[-1]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert "additionalProperties" not in sent["tools"][0]["functionDeclarations"][0]["parameters"]

    follow: Any = [
        *ask,
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
    ]
    r2 = gateway.chat.completions.create(model="gemini-2.5-flash", messages=follow, tools=[WEATHER])
    assert r2.choices[0].message.content == 'tool said: {"sky": "clear"}'
    contents = fake[0].bodies[-1]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    # The call's thought signature went to the client and came back with the call.
    assert contents[1]["parts"][0]["thoughtSignature"].startswith("sig-get_weather")
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}
    ]


def test_streamed_tool_call(gateway: openai.OpenAI) -> None:
    chunks = list(
        gateway.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "Bergen"}],
            tools=[WEATHER],
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(deltas) == 1 and deltas[0].id and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(deltas[0].function.arguments or "") == {"city": "Bergen"}  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_json_schema_and_images(gateway: openai.OpenAI, fake: tuple[FakeGemini, str]) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "additionalProperties": False,
    }
    r = gateway.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "count"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "c", "schema": schema, "strict": True},
        },
    )
    assert json.loads(r.choices[0].message.content or "") == {"n": 1}
    config = fake[0].bodies[-1]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {"type": "object", "properties": {"n": {"type": "integer"}}}

    content: Any = [{"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]  # fmt: skip
    r = gateway.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": content}]
    )
    assert r.choices[0].message.content == "see [image image/jpeg]"
    assert fake[0].bodies[-1]["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}
    }
    with pytest.raises(openai.BadRequestError, match="data URLs"):
        web: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
        gateway.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": web}]
        )


def test_thinking_budget_and_thought_tokens(
    gateway: openai.OpenAI, fake: tuple[FakeGemini, str]
) -> None:
    r = gateway.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "think"}],
        reasoning_effort="low",
    )
    assert fake[0].bodies[-1]["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024,
        "includeThoughts": True,
    }
    assert r.usage is not None and r.usage.completion_tokens == 1 + 3  # answer + thoughts
    assert r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == 3
    assert getattr(r.choices[0].message, "reasoning_content", None) == "thinking it over"


def test_cached_tokens_and_cost(
    fake: tuple[FakeGemini, str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GEMINI_KEY", KEY)
    messages: Any = [
        {"role": "system", "content": "a long shared system prompt of ten words in all"},
        {"role": "user", "content": "hi"},
    ]
    with serving(create_app(config(fake[1], db_url))) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        client.chat.completions.create(model="gemini-2.5-flash", messages=messages)
        r = client.chat.completions.create(model="gemini-2.5-flash", messages=messages)
        client.close()
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    assert (r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens) == (11, 10)
    rows = Store(db_url).recent_requests()  # newest first
    # gemini-2.5-flash at Gemini: $0.30 in, $2.50 out, $0.03 cached.
    assert rows[0]["cost_usd"] == pytest.approx((1 * 0.3 + 10 * 0.03 + 1 * 2.5) / 1e6)
    assert rows[1]["cost_usd"] == pytest.approx((11 * 0.3 + 1 * 2.5) / 1e6)
    assert rows[0]["cached_tokens"] == 10


def test_errors_map_to_statuses(gateway: openai.OpenAI) -> None:
    ask: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.RateLimitError):
        gateway.chat.completions.create(model="limited", messages=ask)
    with pytest.raises(openai.InternalServerError, match="UNAVAILABLE"):
        gateway.chat.completions.create(model="busy", messages=ask)


def test_a_stream_without_a_finish_reason_is_an_error(gateway: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError, match="before a finishReason"):
        list(
            gateway.chat.completions.create(
                model="cut", messages=[{"role": "user", "content": "x y"}], stream=True
            )
        )
