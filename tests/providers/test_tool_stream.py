"""Streamed tool calls in OpenAI's form: repeats dropped, correct streams left as they are."""

from __future__ import annotations

import copy
import json
from typing import Any

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from polyroute.providers.tool_stream import ToolCallStream

ARGS = ['{"city": ', '"Paris"', "}"]


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def call(index: int, id_: str | None = None, name: str | None = None, args: str | None = None,
         type_: str | None = "function") -> dict[str, Any]:  # fmt: skip
    entry: dict[str, Any] = {"index": index}
    if id_ is not None:
        entry["id"] = id_
    if type_ is not None and id_ is not None:
        entry["type"] = type_
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    entry["function"] = function
    return entry


def openai_stream() -> list[dict[str, Any]]:
    """Two parallel calls as OpenAI streams them."""
    return [
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [call(0, "call_a", "get_weather", "")]}),
        *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in ARGS),
        chunk({"tool_calls": [call(1, "call_b", "get_time", "")]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    ]


def llama_cpp_stream() -> list[dict[str, Any]]:
    """What llama-cpp-python streams for a forced tool call: id and name in every chunk."""
    role = {"role": "assistant", "content": None, "function_call": None, "tool_calls": None}
    pieces = [
        chunk({
            "role": None, "content": None,
            "function_call": {"name": "get_weather", "arguments": a},
            "tool_calls": [call(0, "call__0_get_weather_cmpl-9", "get_weather", a)],
        })
        for a in ARGS
    ]  # fmt: skip
    end = {"role": None, "content": None, "function_call": None, "tool_calls": None}
    return [chunk(role), *pieces, chunk(end, "tool_calls")]


def final_message(chunks: list[dict[str, Any]]) -> Any:
    """What the openai SDK's stream helper (``.stream(...).get_final_completion()``) builds."""
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    return state.get_final_completion().choices[0]


def fixed(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stream = ToolCallStream()
    return [stream.fix(c) for c in chunks]


def test_llama_cpp_repeats_break_the_sdk_until_fixed() -> None:
    broken = final_message(llama_cpp_stream()).message.tool_calls[0]
    assert broken.function.name == "get_weather" * 3  # the bug, as the SDK sees it

    choice = final_message(fixed(llama_cpp_stream()))
    (tool_call,) = choice.message.tool_calls
    assert tool_call.id == "call__0_get_weather_cmpl-9"
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert choice.finish_reason == "tool_calls"
    assert choice.message.function_call is None  # the duplicate legacy field is gone


def test_id_type_and_name_come_in_the_first_delta_only() -> None:
    out = fixed(llama_cpp_stream())
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in out[1:4]]
    assert deltas[0] == {
        "index": 0,
        "id": "call__0_get_weather_cmpl-9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ARGS[0]},
    }
    assert deltas[1:] == [{"index": 0, "function": {"arguments": a}} for a in ARGS[1:]]


def test_a_stream_in_openai_form_passes_unchanged() -> None:
    original = openai_stream()
    assert fixed(copy.deepcopy(original)) == original
    calls = final_message(original).message.tool_calls
    assert [(c.id, c.function.name) for c in calls] == [
        ("call_a", "get_weather"),
        ("call_b", "get_time"),
    ]


def test_plain_text_streams_pass_unchanged() -> None:
    text = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "hi"}),
        chunk({}, "stop"),
    ]
    usage = {"id": "x", "choices": [], "usage": {"prompt_tokens": 1}}
    original = [*text, usage]
    assert fixed(copy.deepcopy(original)) == original


def test_a_second_call_at_a_taken_index_gets_its_own() -> None:
    # Some servers number every call 0 and tell them apart by id only.
    stream = [
        chunk({"tool_calls": [call(0, "call_a", "get_weather", '{"city":"Paris"}')]}),
        chunk({"tool_calls": [call(0, "call_b", "get_weather", '{"city":"Rome"}')]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}),
        chunk({}, "tool_calls"),
    ]
    calls = final_message(fixed(stream)).message.tool_calls
    assert [(c.id, json.loads(c.function.arguments)["city"]) for c in calls] == [
        ("call_a", "Paris"),
        ("call_b", "Rome"),
    ]


def test_a_call_without_an_id_gets_one_and_stop_becomes_tool_calls() -> None:
    stream = [
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({}, "stop"),
    ]
    choice = final_message(fixed(stream))
    (tool_call,) = choice.message.tool_calls
    assert tool_call.id.startswith("call_") and len(tool_call.id) > 10
    assert choice.finish_reason == "tool_calls"


def test_each_choice_keeps_its_own_calls() -> None:
    stream = [
        chunk({"tool_calls": [call(0, "call_a", "f", "")]}, index=0),
        chunk({"tool_calls": [call(0, "call_b", "g", "")]}, index=1),
        chunk({"tool_calls": [call(0, "call_a", "f", "1")]}, index=0),
    ]
    out = fixed(stream)
    assert out[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0  # not 1: other choice
    assert out[2]["choices"][0]["delta"]["tool_calls"][0] == {
        "index": 0,
        "function": {"arguments": "1"},
    }


def test_the_legacy_function_call_names_its_function_once() -> None:
    stream = [
        chunk({"function_call": {"name": "f", "arguments": "{"}}),
        chunk({"function_call": {"name": "f", "arguments": "}"}}),
        chunk({"function_call": {"name": None, "arguments": None}}),
    ]
    out = [c["choices"][0]["delta"]["function_call"] for c in fixed(stream)]
    assert out == [{"name": "f", "arguments": "{"}, {"arguments": "}"}, {}]
