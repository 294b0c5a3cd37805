"""The translations as pure functions: details the end-to-end tests do not reach, and the
inbound (/v1/messages) and outbound (anthropic provider) translations as each other's inverse."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyroute.errors import InvalidRequest, UpstreamError
from polyroute.gateway.messages_protocol import to_openai, validate_messages_request
from polyroute.gateway.messages_wire import MessageStream, to_message
from polyroute.providers.anthropic_wire import StreamTranslator, from_anthropic, to_anthropic
from polyroute.providers.gemini_wire import clean_schema, to_gemini

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_parallel_tool_calls_off_and_required_choice() -> None:
    out = to_anthropic({"model": "m", "messages": USER, "tools": [TOOL], "tool_choice": "required",
                        "parallel_tool_calls": False})  # fmt: skip
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_json_mode_with_tools_of_its_own_becomes_an_instruction() -> None:
    out = to_anthropic(
        {
            "model": "m",
            "messages": USER,
            "tools": [TOOL],
            "response_format": {"type": "json_object"},
        }
    )
    assert [t["name"] for t in out["tools"]] == ["f"]
    assert "JSON" in out["system"][-1]["text"]


def test_reasoning_effort_turns_on_thinking_with_room_for_the_answer() -> None:
    out = to_anthropic({"model": "m", "messages": USER, "reasoning_effort": "medium",
                        "max_tokens": 100, "temperature": 0.5})  # fmt: skip
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert out["max_tokens"] > 4096 and "temperature" not in out


def test_consecutive_tool_results_share_one_user_turn() -> None:
    calls = [{"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
             for i in range(2)]  # fmt: skip
    out = to_anthropic({"model": "m", "messages": [
        *USER, {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c0", "content": "a"},
        {"role": "tool", "tool_call_id": "c1", "content": "b"},
    ]})  # fmt: skip
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in out["messages"][2]["content"]] == ["c0", "c1"]


def test_bad_tool_arguments_are_a_400() -> None:
    bad = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}
    with pytest.raises(InvalidRequest, match="not JSON"):
        to_anthropic({"model": "m", "messages": [{"role": "assistant", "tool_calls": [bad]}]})


def test_thinking_and_refusal_come_back() -> None:
    data = {"id": "msg", "model": "m", "stop_reason": "refusal", "usage": {"input_tokens": 1},
            "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "no"}]}  # fmt: skip
    choice = from_anthropic(data, json_mode=False)["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["reasoning_content"] == "hmm"


def test_an_error_event_raises() -> None:
    t = StreamTranslator(json_mode=False)
    with pytest.raises(UpstreamError, match="overloaded_error"):
        t.feed("error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}})


def test_gemini_schema_cleaning_is_deep() -> None:
    schema = {"type": "object", "$schema": "x", "additionalProperties": False,
              "properties": {"a": {"type": "array", "items": {"type": "string", "const": "k"}}}}  # fmt: skip
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "string"}}},
    }


def test_gemini_refuses_a_tool_result_it_cannot_name() -> None:
    with pytest.raises(InvalidRequest, match="function's name"):
        to_gemini(
            {"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]}
        )


def test_inbound_tool_errors_and_images() -> None:
    body = {"model": "auto", "max_tokens": 5, "messages": [
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}},
        ]},
    ]}  # fmt: skip
    out = to_openai(validate_messages_request(body), body)
    assert out["messages"][0] == {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}
    assert out["messages"][1]["content"][0]["image_url"]["url"] == "data:image/png;base64,AA"


def test_inbound_validation_names_the_field() -> None:
    with pytest.raises(InvalidRequest, match=r"messages\.0\.role"):
        validate_messages_request(
            {"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}
        )


def test_outbound_message_usage_splits_cache_tokens() -> None:
    result = {"model": "m", "choices": [{"message": {"content": "x"}, "finish_reason": "length"}],
              "usage": {"prompt_tokens": 10, "completion_tokens": 2,
                        "prompt_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 3}}}  # fmt: skip
    message = to_message(result, "trace")
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"] == {"input_tokens": 1, "output_tokens": 2,
                                "cache_read_input_tokens": 6, "cache_creation_input_tokens": 3}  # fmt: skip


def test_outbound_stream_opens_and_closes_blocks_in_order() -> None:
    s = MessageStream("t", "m")
    events = s.start() + s.feed({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    events += s.feed({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]})  # fmt: skip
    events += s.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    events += s.end()
    names = [line[7:] for line in events.decode().splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    assert '"stop_reason":"tool_use"' in events.decode()


# An Anthropic request → OpenAI (inbound) → Anthropic (outbound) is the request it was,
# up to the normal form (strings as text blocks, the system prompt as a list).
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(0, 3))):
        messages.append({"role": "user", "content": [{"type": "text", "text": draw(_text)}]})
        call = {"type": "tool_use", "id": f"toolu_{turn}", "name": "f",
                "input": draw(st.dictionaries(st.sampled_from("abc"), st.integers(-(2**63), 2**63 - 1), max_size=2))}  # fmt: skip
        messages.append(
            {"role": "assistant", "content": [{"type": "text", "text": draw(_text)}, call]}
        )
        result = {"type": "tool_result", "tool_use_id": f"toolu_{turn}", "content": draw(_text)}
        messages.append({"role": "user", "content": [result]})
    messages.append({"role": "user", "content": [{"type": "text", "text": draw(_text)}]})
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": draw(st.integers(1, 9999)),
        "messages": messages,
    }
    if draw(st.booleans()):
        body["system"] = [
            {"type": "text", "text": draw(_text), "cache_control": {"type": "ephemeral"}}
        ]
    if draw(st.booleans()):
        body["stop_sequences"] = [draw(_text)]
    if draw(st.booleans()):
        body["tools"] = [{"name": "f", "input_schema": {"type": "object"}}]
        body["tool_choice"] = draw(st.sampled_from([{"type": "auto"}, {"type": "any"},
                                                    {"type": "tool", "name": "f"}]))  # fmt: skip
    return body


@given(conversations())
def test_inbound_then_outbound_is_the_identity(body: dict[str, Any]) -> None:
    again = to_anthropic(to_openai(validate_messages_request(body), body))
    # A tool result and the user's next text may share a turn; here each is its own turn,
    # and adjacent user turns merge, as Anthropic itself reads them.
    merged: list[dict[str, Any]] = []
    for m in body["messages"]:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1] = {**merged[-1], "content": merged[-1]["content"] + m["content"]}
        else:
            merged.append(m)
    assert again["messages"] == merged
    assert again["max_tokens"] == body["max_tokens"]
    assert again.get("system") == body.get("system")
    assert again.get("stop_sequences") == body.get("stop_sequences")
    assert again.get("tools") == body.get("tools")
    assert again.get("tool_choice") == body.get("tool_choice")


def test_json_mode_stream_sends_the_forced_tools_input_as_text() -> None:
    t = StreamTranslator(json_mode=True)
    chunks = t.feed("message_start", {"type": "message_start", "message": {"id": "m", "usage": {}}})
    block = {"type": "tool_use", "id": "toolu_1", "name": "json_response", "input": {}}
    chunks += t.feed("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": block})  # fmt: skip
    for piece in ('{"a": ', "1}"):
        delta = {"type": "input_json_delta", "partial_json": piece}
        chunks += t.feed("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": delta})  # fmt: skip
    chunks += t.feed("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": "tool_use"}})  # fmt: skip
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == '{"a": 1}'
    assert not any("tool_calls" in d for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_overloaded_and_server_errors_retry_client_errors_do_not() -> None:
    from polyroute.config import ProviderConfig
    from polyroute.errors import RateLimited
    from polyroute.providers.http_json import JsonHttp

    http = JsonHttp("a", ProviderConfig(api="anthropic"), {}, transport=None)
    overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    e = http.status_error(529, overloaded)
    assert e.retryable and e.status_code == 502 and "overloaded_error: Overloaded" in e.message
    assert isinstance(http.status_error(429, b"{}"), RateLimited)
    refused = http.status_error(400, b'{"error":{"code":400,"message":"bad","status":"INVALID"}}')
    assert (
        not refused.retryable and refused.status_code == 400 and "INVALID: bad" in refused.message
    )


def test_no_vendor_sdk_is_imported_at_run_time() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('anthropic', 'google', 'google.genai', 'openai'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "import polyroute.gateway.app, polyroute.providers.anthropic\n"
        "import polyroute.providers.gemini, polyroute.providers.azure\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_signed_thinking_goes_to_the_client_and_back_before_the_tool_use() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    call = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    data = {"id": "m", "model": "m", "stop_reason": "tool_use", "content": [thinking, call]}
    message = from_anthropic(data, json_mode=False)["choices"][0]["message"]
    assert message["thinking_blocks"] == [thinking]
    follow = to_anthropic({"model": "m", "messages": [
        *USER, message, {"role": "tool", "tool_call_id": "t1", "content": "ok"},
    ]})  # fmt: skip
    assert follow["messages"][1]["content"] == [thinking, call]


def test_documents_and_tool_result_images_survive_the_round_trip() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}
    png = {"type": "base64", "media_type": "image/png", "data": "iVBO"}
    body = {"model": "auto", "max_tokens": 5, "messages": [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t",
             "content": [{"type": "text", "text": "a screenshot"}, {"type": "image", "source": png}]},
            {"type": "document", "source": pdf},
        ]},
    ]}  # fmt: skip
    chat = to_openai(validate_messages_request(body), body)
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "t", "content": "a screenshot"}
    assert [p["type"] for p in chat["messages"][3]["content"]] == ["image_url", "file"]
    back = to_anthropic(chat)["messages"][2]["content"]
    assert [b["type"] for b in back] == ["tool_result", "image", "document"]
    assert back[1]["source"] == png and back[2]["source"] == pdf
    gemini = to_gemini(chat)["contents"][2]["parts"]
    assert gemini[2] == {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}}


async def test_a_chat_stream_without_done_ends_in_an_error_event() -> None:
    from collections.abc import AsyncIterator

    from polyroute.gateway.messages import _relay

    async def chunks() -> AsyncIterator[bytes]:
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "half"}}]}\n\n'

    out = b"".join([piece async for piece in _relay(chunks(), MessageStream("t", "m"))])
    assert b"event: error" in out and b"message_stop" not in out
