"""Streamed tool calls in OpenAI's chunk format, whatever the upstream sends.

OpenAI streams a tool call as deltas keyed by ``index``: the first delta of each call holds
its ``id``, ``type: "function"`` and ``function.name`` (and ``arguments``, often empty), the
later ones only pieces of ``function.arguments``; the last chunk of the choice says
``finish_reason: "tool_calls"``. Clients rebuild a call by concatenating every string they
receive for its index (the openai SDK's stream helpers do), so an upstream that repeats the
id and name in every delta, as llama-cpp-python does, yields a call named
``get_weatherget_weather…``.

:class:`ToolCallStream` rewrites each chunk of one stream into OpenAI's form: the id, type
and name once per call, repeats dropped, a call that an upstream put at an index already
taken (a new id there) moved to its own index, and ``finish_reason`` ``tool_calls`` where a
choice called a tool. A stream already in OpenAI's form passes through unchanged, so every
provider's stream goes through it; chunks without tool calls cost one dict lookup.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from polyroute.providers.base import JSON


@dataclass(slots=True)
class _Call:
    """One tool call of a choice, as sent to the client so far."""

    id: str | None
    started: bool = False
    name: str | None = None


@dataclass(slots=True)
class _Choice:
    """The tool calls of one choice, and where the upstream's indexes point."""

    calls: list[_Call] = field(default_factory=list)
    by_id: dict[str, int] = field(default_factory=dict)
    #: The upstream's index → the index the client sees (the latest call there).
    by_index: dict[Any, int] = field(default_factory=dict)
    legacy_name: str | None = None


class ToolCallStream:
    """Makes one stream's tool-call deltas follow OpenAI's format (see the module doc)."""

    __slots__ = ("_choices",)

    def __init__(self) -> None:
        self._choices: dict[Any, _Choice] = {}

    def fix(self, chunk: JSON) -> JSON:
        """``chunk``, its tool-call deltas rewritten in place; returned for chaining."""
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return chunk
        for choice in choices:
            # The hot path (text deltas) is two dict lookups per choice.
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            if "tool_calls" in delta or "function_call" in delta:
                self._fix_delta(choice, delta)
            if self._choices and choice.get("finish_reason") == "stop":
                state = self._choices.get(choice.get("index", 0))
                if state is not None and state.calls:
                    choice["finish_reason"] = "tool_calls"
        return chunk

    def _fix_delta(self, choice: dict[str, Any], delta: dict[str, Any]) -> None:
        key = choice.get("index", 0)
        calls = delta.get("tool_calls")
        if calls and isinstance(calls, list):
            state = self._choices.setdefault(key, _Choice())
            delta["tool_calls"] = [self._fix_call(state, c) for c in calls]
            # llama-cpp-python repeats the call as a legacy function_call as well.
            delta.pop("function_call", None)
        elif isinstance(delta.get("function_call"), dict):
            self._fix_legacy(self._choices.setdefault(key, _Choice()), delta)

    @staticmethod
    def _fix_call(state: _Choice, entry: Any) -> Any:
        if not isinstance(entry, dict):
            return entry
        upstream_index = entry.get("index")
        call_id = entry.get("id")
        if isinstance(call_id, str) and call_id in state.by_id:
            ours = state.by_id[call_id]  # a repeat of a call already open
        elif not isinstance(call_id, str) and upstream_index in state.by_index:
            ours = state.by_index[upstream_index]  # the next piece of an open call
        elif not isinstance(call_id, str) and upstream_index is None and state.calls:
            ours = len(state.calls) - 1  # no index, no id: the call under way
        else:
            ours = len(state.calls)  # a new call: a new id, or a new index
            state.calls.append(_Call(call_id if isinstance(call_id, str) else None))
            if isinstance(call_id, str):
                state.by_id[call_id] = ours
        if upstream_index is not None:
            state.by_index[upstream_index] = ours
        call = state.calls[ours]
        function = entry.get("function")
        function = function if isinstance(function, dict) else {}
        out: dict[str, Any] = {"index": ours}
        if not call.started:
            call.started = True
            # A client needs an id to send the call's result back; invent one if none came.
            call.id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            out["id"] = call.id
            out["type"] = entry.get("type") or "function"
        fixed: dict[str, Any] = {}
        name = function.get("name")
        if isinstance(name, str) and name and name != call.name:
            # The name once; a name that differs from the one sent continues it (an upstream
            # may split it), one that repeats it is dropped.
            call.name = name if call.name is None else call.name + name
            fixed["name"] = name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            fixed["arguments"] = arguments
        elif "id" in out:
            fixed["arguments"] = ""
        for k, v in function.items():  # anything else the upstream adds, as it came
            if k not in ("name", "arguments"):
                fixed[k] = v
        if fixed or "id" in out:
            out["function"] = fixed
        for k, v in entry.items():
            if k not in ("index", "id", "type", "function"):
                out[k] = v
        return out

    @staticmethod
    def _fix_legacy(state: _Choice, delta: dict[str, Any]) -> None:
        """The deprecated ``function_call`` delta: its name once, then argument pieces."""
        function = dict(delta["function_call"])
        name = function.get("name")
        if name is None or name == state.legacy_name:
            function.pop("name", None)
        elif isinstance(name, str):
            state.legacy_name = name
        if function.get("arguments") is None:
            function.pop("arguments", None)
        delta["function_call"] = function
