"""A fake Anthropic Messages API on 127.0.0.1, built from Anthropic's published API reference.

It checks what the real API checks and a translation could get wrong (the ``x-api-key`` and
``anthropic-version`` headers, a required ``max_tokens``, roles ``user``/``assistant`` only,
known block types, every ``tool_result`` answering a ``tool_use`` of the turn before, a
``tool_choice`` naming a given tool), answering errors in Anthropic's shape
(``{"type": "error", "error": {"type", "message"}}``). It answers like an echo:

- a user turn of text, with tools offered (or a tool forced): a ``tool_use`` of the first
  (or forced) tool, with an input made from its schema (strings get the user's text);
- a user turn of tool results: ``"tool said: <result>"``;
- otherwise the user's text (images described as ``[image <media type or url>]``), cut at
  a stop sequence (``stop_sequence``) or at ``max_tokens`` words (``max_tokens``).

Usage counts words. A block with ``cache_control`` makes the prompt up to it a cached
prefix: written (``cache_creation_input_tokens``) the first time, read after. Streams follow
the reference's event sequence: message_start, content_block_start, ping,
content_block_delta (text_delta / input_json_delta), content_block_stop, message_delta,
message_stop. Models ``overloaded`` (529), ``limited`` (429) and ``stream-error`` (an
``error`` event mid-stream) fail on purpose; ``stream-cut`` ends a stream early.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

KEY = "test-anthropic-key"
_BLOCKS = {"text", "image", "document", "tool_use", "tool_result", "thinking"}


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


def _error(status: int, kind: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


class FakeAnthropic:
    """The app, and what it received (for tests to check the translation)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._prefixes: set[str] = set()
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        return JSONResponse({"data": [{"type": "model", "id": "claude-fake"}], "has_more": False})

    async def count_tokens(self, request: Request) -> Response:
        """Words, as the usage counts them; ``max_tokens`` is not taken here."""
        if request.headers.get("x-api-key") != KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        body = await request.json()
        self.bodies.append(body)
        if "max_tokens" in body:
            return _error(
                400, "invalid_request_error", "max_tokens: Extra inputs are not permitted"
            )
        try:
            _validate({**body, "max_tokens": 1})
        except Invalid as e:
            return _error(e.status, e.kind, str(e))
        usage = self._input_usage(body)
        return JSONResponse({"input_tokens": sum(usage.values())})

    async def messages(self, request: Request) -> Response:
        self.headers.append(dict(request.headers))
        if request.headers.get("x-api-key") != KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        body = await request.json()
        self.bodies.append(body)
        try:
            _validate(body)
        except Invalid as e:
            return _error(e.status, e.kind, str(e))
        model = body["model"]
        if model == "overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        if model == "limited":
            return _error(
                429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"
            )
        message = self._answer(body)
        if body.get("stream"):
            return StreamingResponse(self._events(message), media_type="text/event-stream")
        return JSONResponse(message)

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        last = body["messages"][-1]
        blocks = _content(last)
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        results = [b for b in blocks if b["type"] == "tool_result"]
        text = " ".join(_describe(b) for b in blocks if b["type"] in ("text", "image"))
        content: list[dict[str, Any]]
        stop_sequence = None
        if results:
            said = " ".join(_result_text(r) for r in results)
            content, stop = [{"type": "text", "text": f"tool said: {said}"}], "end_turn"
        elif tools and choice["type"] != "none":
            tool = tools[0]
            if choice["type"] == "tool":
                tool = next(t for t in tools if t["name"] == choice["name"])
            call = {
                "type": "tool_use",
                "id": f"toolu_{len(self.bodies):04d}",
                "name": tool["name"],
                "input": _sample(tool["input_schema"], text),
            }
            content, stop = [{"type": "text", "text": "Calling a tool."}, call], "tool_use"
            if choice["type"] == "tool":
                content = [call]  # a forced tool comes without preamble, as at Anthropic
        else:
            words, stop = text.split(), "end_turn"
            for seq in body.get("stop_sequences") or []:
                if seq in words:
                    words, stop, stop_sequence = words[: words.index(seq)], "stop_sequence", seq
            if len(words) > body["max_tokens"]:
                words, stop = words[: body["max_tokens"]], "max_tokens"
            content = [{"type": "text", "text": " ".join(words)}]
        output = sum(len(_describe(b).split()) for b in content if b["type"] == "text")
        output += sum(
            len(json.dumps(b["input"]).split()) for b in content if b["type"] == "tool_use"
        )
        return {
            "id": f"msg_{len(self.bodies):04d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": stop_sequence,
            "usage": {**self._input_usage(body), "output_tokens": output},
        }

    def _input_usage(self, body: dict[str, Any]) -> dict[str, int]:
        system = body.get("system") or []
        system = [{"type": "text", "text": system}] if isinstance(system, str) else system
        flat = list(system) + [b for m in body["messages"] for b in _content(m)]
        total, prefix, key = 0, 0, ""
        for block in flat:
            total += len(_describe(block).split())
            if "cache_control" in block:
                prefix, key = total, json.dumps(flat[: flat.index(block) + 1], sort_keys=True)
        usage = {
            "input_tokens": total - prefix,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if prefix:
            seen = key in self._prefixes
            self._prefixes.add(key)
            usage["cache_read_input_tokens" if seen else "cache_creation_input_tokens"] = prefix
        return usage

    async def _events(self, message: dict[str, Any]) -> AsyncIterator[bytes]:
        def event(kind: str, data: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**message["usage"], "output_tokens": 1},
        }
        yield event("message_start", {"message": start})
        for i, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield event(
                    "content_block_start",
                    {"index": i, "content_block": {"type": "text", "text": ""}},
                )
                if i == 0:
                    yield event("ping", {})
                for n, word in enumerate(block["text"].split(" ")):
                    piece = word if n == 0 else " " + word
                    yield event(
                        "content_block_delta",
                        {"index": i, "delta": {"type": "text_delta", "text": piece}},
                    )
            else:
                head = {**block, "input": {}}
                yield event("content_block_start", {"index": i, "content_block": head})
                if message["model"] == "stream-error":
                    yield event(
                        "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
                    )
                    return
                raw = json.dumps(block["input"])
                for n in range(0, len(raw), 7):
                    delta = {"type": "input_json_delta", "partial_json": raw[n : n + 7]}
                    yield event("content_block_delta", {"index": i, "delta": delta})
            yield event("content_block_stop", {"index": i})
        if message["model"] == "stream-error":
            yield event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
            return
        if message["model"] == "stream-cut":
            return  # the connection ends cleanly, but before message_delta and message_stop
        yield event(
            "message_delta",
            {
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
        yield event("message_stop", {})


def _content(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _describe(block: dict[str, Any]) -> str:
    if block["type"] == "image":
        source = block["source"]
        return f"[image {source.get('media_type') or source.get('url')}]"
    if block["type"] == "tool_result":
        return _result_text(block)
    if block["type"] == "tool_use":
        return json.dumps(block["input"])
    return str(block.get("text", ""))


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content)
    return str(content)


def _sample(schema: dict[str, Any], text: str) -> Any:
    """A value valid for ``schema``; strings are the user's text."""
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _sample(sub, text) for name, sub in props.items()}
    if kind == "array":
        return [_sample(schema.get("items") or {"type": "string"}, text)]
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": text, "integer": 1, "number": 1.5, "boolean": True}.get(kind, text)


def _validate(body: dict[str, Any]) -> None:
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            raise Invalid(f"{field}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise Invalid("max_tokens: must be a positive integer")
    if "temperature" in body and not 0 <= body["temperature"] <= 1:
        raise Invalid("temperature: must be between 0 and 1")
    system = body.get("system")
    if isinstance(system, list) and not all(
        isinstance(b, dict) and b.get("type") == "text" for b in system
    ):
        raise Invalid("system: must be a string or a list of text blocks")
    if not body["messages"]:
        raise Invalid("messages: at least one message is required")
    tool_ids: set[str] = set()
    for i, message in enumerate(body["messages"]):
        if message.get("role") not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _content(message)
        for block in blocks:
            if block.get("type") not in _BLOCKS:
                raise Invalid(f"messages.{i}.content: unknown block type {block.get('type')!r}")
            if block["type"] == "image":
                source = block.get("source") or {}
                if source.get("type") == "base64":
                    if not source.get("media_type", "").startswith("image/") or not source.get(
                        "data"
                    ):
                        raise Invalid(f"messages.{i}: image source needs media_type and data")
                elif source.get("type") != "url" or not source.get("url"):
                    raise Invalid(f"messages.{i}: image source must be base64 or url")
            if block["type"] == "tool_result" and block.get("tool_use_id") not in tool_ids:
                raise Invalid(
                    f"messages.{i}: unexpected tool_use_id {block.get('tool_use_id')!r} in "
                    "tool_result blocks: each tool_result must answer a tool_use of the "
                    "previous message"
                )
        tool_ids = {b["id"] for b in blocks if b["type"] == "tool_use"}
        if message["role"] == "assistant" and any(b["type"] == "tool_result" for b in blocks):
            raise Invalid(f"messages.{i}: tool_result blocks belong in user messages")
    names = []
    for tool in body.get("tools") or []:
        if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
            raise Invalid("tools: each tool needs a name and an input_schema")
        names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice.type: must be auto, any, tool or none")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise Invalid(f"tool_choice.name: {choice.get('name')!r} is not one of the tools")
    if "thinking" in body and body["thinking"].get("budget_tokens", 0) >= body["max_tokens"]:
        raise Invalid("max_tokens must be greater than thinking.budget_tokens")
