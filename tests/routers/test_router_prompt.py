"""What a router reads of a conversation: the turn to answer, the same in training and serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyroute.gateway.protocol import validate_chat_request
from polyroute.gateway.routing import route_request
from polyroute.routing.prompt import flatten_messages, routed_messages

SYSTEM = {"role": "system", "content": "You are a travel agent. Be brief."}
WEATHER_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
        }
    ],
}
WEATHER_RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}

#: An agent's conversation: two user turns, a tool call and its result, waiting for an answer.
AGENT: list[dict[str, Any]] = [
    SYSTEM,
    {"role": "user", "content": "Write a haiku about the sea."},
    {"role": "assistant", "content": "Waves fold into foam / ..."},
    {"role": "user", "content": "Should I pack an umbrella for Paris tomorrow?"},
    WEATHER_CALL,
    WEATHER_RESULT,
]


def test_a_lone_user_message_reads_exactly_as_before() -> None:
    # Trained routers depend on this: routing data holds single prompts as plain text.
    assert flatten_messages([{"role": "user", "content": "What is 2+2?"}]) == "What is 2+2?"
    parts = [{"type": "text", "text": "what is"}, {"type": "text", "text": "this?"}]
    assert flatten_messages([{"role": "user", "content": parts}]) == "what is this?"


def test_a_system_prompt_and_a_question_read_as_before() -> None:
    msgs = [SYSTEM, {"role": "user", "content": "Hi"}]
    assert flatten_messages(msgs) == f"system: {SYSTEM['content']}\nuser: Hi"


def test_an_agent_turn_reads_the_system_prompt_last_question_and_tool_results() -> None:
    text = flatten_messages(AGENT)
    assert text == (
        "system: You are a travel agent. Be brief.\n"
        "user: Should I pack an umbrella for Paris tomorrow?\n"
        'tool: {"temp_c": 21}'
    )
    # Neither the answered turns nor the assistant's tool-call JSON.
    assert "haiku" not in text and "Waves" not in text and "get_weather" not in text


def test_a_multi_turn_chat_reads_its_last_user_turn_alone() -> None:
    chat = [
        {"role": "user", "content": "Translate 'cat' to French."},
        {"role": "assistant", "content": "chat"},
        {"role": "user", "content": "Prove that there are infinitely many primes."},
    ]
    assert flatten_messages(chat) == "Prove that there are infinitely many primes."


def test_tool_results_before_the_last_user_turn_are_history() -> None:
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        WEATHER_CALL,
        WEATHER_RESULT,
        {"role": "assistant", "content": "21 degrees."},
        {"role": "user", "content": "And what should I wear?"},
    ]
    assert routed_messages(msgs) == [msgs[-1]]


def test_several_tool_results_after_the_question_are_all_kept() -> None:
    second = {"role": "tool", "tool_call_id": "call_2", "content": "rain at 15:00"}
    msgs = [{"role": "user", "content": "Umbrella?"}, WEATHER_CALL, WEATHER_RESULT, second]
    assert flatten_messages(msgs) == 'user: Umbrella?\ntool: {"temp_c": 21}\ntool: rain at 15:00'


def test_a_conversation_without_a_user_turn_keeps_every_message() -> None:
    msgs = [SYSTEM, {"role": "assistant", "content": "Hello! Where to?"}]
    assert flatten_messages(msgs) == f"system: {SYSTEM['content']}\nassistant: Hello! Where to?"


def test_the_gateway_routes_on_the_same_text_but_sizes_the_whole_conversation() -> None:
    body: dict[str, Any] = {"model": "auto", "messages": AGENT}
    request = route_request(validate_chat_request(body), body)
    assert request.prompt == flatten_messages(AGENT)
    assert list(request.messages) == AGENT  # routers that want the structure get it all
    # The context-window check counts what the upstream reads: every turn, tool calls too.
    assert request.input_tokens * 4 > len(request.prompt) + len("Write a haiku about the sea.")


def test_routing_data_reads_a_conversation_as_the_gateway_does(tmp_path: Path) -> None:
    from polyroute.routing_eval.dataset import RoutingDataset

    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"id": "agent-1", "prompt": AGENT, "scores": {"a": 1.0}}) + "\n")
    body: dict[str, Any] = {"model": "auto", "messages": AGENT}
    served = route_request(validate_chat_request(body), body).prompt
    assert RoutingDataset.load(path).prompts == [served]
