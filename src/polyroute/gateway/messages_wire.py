"""OpenAI chat answers as Anthropic Messages answers: the whole message, or its event stream.

The inverse of the ``anthropic`` provider's translation, for ``POST /v1/messages``. Usage
goes back in Anthropic's terms: ``input_tokens`` without the cache reads and writes, which
are counted apart.
"""

from __future__ import annotations

from typing import Any

import orjson

from polyroute.errors import PolyrouteError, UpstreamError
from polyroute.providers.base import JSON, Usage

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

#: HTTP status → Anthropic's error type.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_json(status: int, message: str) -> bytes:
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def anthropic_usage(usage: Usage | None) -> JSON:
    usage = usage or Usage()
    read, written = usage.cached_tokens, usage.cache_write_tokens
    return {
        "input_tokens": max(0, usage.prompt_tokens - read - written),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def _input(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments or {}
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        raise UpstreamError("the model's tool call arguments are not JSON") from None


def to_message(result: JSON, trace_id: str) -> JSON:
    """The Anthropic message for an OpenAI chat completion (its first choice)."""
    choices = result.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[JSON] = []
    if message.get("content"):
        content.append({"type": "text", "text": str(message["content"])})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _input(function.get("arguments")),
            }
        )
    return {
        "id": trace_id,
        "type": "message",
        "role": "assistant",
        "model": result.get("model"),
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(Usage.from_openai(result.get("usage"))),
    }


def _event(kind: str, data: JSON) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


class MessageStream:
    """OpenAI chunks in, Anthropic stream events (as SSE bytes) out.

    The sequence is Anthropic's: ``message_start``, ``ping``, then per content block
    ``content_block_start``, ``content_block_delta``s, ``content_block_stop``, and at the end
    ``message_delta`` (stop reason, usage) and ``message_stop``. Input tokens are known only
    when the upstream's usage arrives, at the end: ``message_start`` says 0 and
    ``message_delta`` carries the full usage, which the ``anthropic`` SDK adopts.
    """

    def __init__(self, trace_id: str, model: str) -> None:
        self.trace_id = trace_id
        self.model = model
        self._index = -1
        self._open: str | None = None  # "text", or "tool:<OpenAI tool call index>"
        self._stop: str | None = None
        self._usage: Usage | None = None

    def start(self) -> bytes:
        message: JSON = {
            "id": self.trace_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(None),
        }
        return _event("message_start", {"message": message}) + _event("ping", {})

    def feed(self, chunk: JSON) -> bytes:
        out = b""
        if chunk.get("usage"):
            self._usage = Usage.from_openai(chunk["usage"])
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self._open != "text":
                    out += self._begin("text", {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or []:
                key = f"tool:{call.get('index', 0)}"
                function = call.get("function") or {}
                if self._open != key:
                    block = {"type": "tool_use", "id": call.get("id"),
                             "name": function.get("name"), "input": {}}  # fmt: skip
                    out += self._begin(key, block)
                if function.get("arguments"):
                    piece = {"type": "input_json_delta", "partial_json": function["arguments"]}
                    out += self._delta(piece)
            if choice.get("finish_reason"):
                self._stop = STOP_REASONS.get(str(choice["finish_reason"]), "end_turn")
        return out

    def end(self) -> bytes:
        delta = {"stop_reason": self._stop or "end_turn", "stop_sequence": None}
        return (
            self._close()
            + _event("message_delta", {"delta": delta, "usage": anthropic_usage(self._usage)})
            + _event("message_stop", {})
        )

    def error(self, e: PolyrouteError) -> bytes:
        """An error after the answer started: Anthropic's ``error`` event, in-band."""
        return b"event: error\ndata: " + error_json(e.status_code, e.message) + b"\n\n"

    def _begin(self, key: str, block: JSON) -> bytes:
        out = self._close()
        self._index += 1
        self._open = key
        return out + _event("content_block_start", {"index": self._index, "content_block": block})

    def _delta(self, delta: JSON) -> bytes:
        return _event("content_block_delta", {"index": self._index, "delta": delta})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"index": self._index})
