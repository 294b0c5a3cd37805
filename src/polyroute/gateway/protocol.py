"""Request types for the OpenAI chat-completions API, and reading a request body safely.

The request is validated once, here; the original dict (unknown fields included) is what
goes upstream, so parameters we do not model still pass through.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from polyroute.errors import (
    InvalidRequest,
    RequestTimeout,
    RequestTooLarge,
    UnsupportedMediaType,
)


class _Open(BaseModel):
    # strict: "temperature": "0.5" is a type error, as at OpenAI; extra fields pass through.
    model_config = ConfigDict(extra="allow", strict=True)


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class StreamOptions(_Open):
    include_usage: bool = False


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` for ``model``, its definitions inlined (the routes read
    the raw request, so FastAPI cannot derive it; /docs and the fuzz tests use it)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"required": True, "content": {"application/json": {"schema": inline(schema)}}}


#: Deepest nesting of objects and arrays a request may have: deeper ones cannot be forwarded
#: (orjson writes at most 255 levels) and no API request needs them.
MAX_JSON_DEPTH = 64


async def read_json_body(
    request: Request, max_bytes: int, *, timeout_s: float | None = None
) -> dict[str, Any]:
    """Read at most ``max_bytes`` of body, within ``timeout_s``, and parse it as a JSON object."""
    kind = request.headers.get("content-type", "")
    media = kind.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json (got {kind[:80] or 'none'})"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestTooLarge(
            f"Request body is {int(declared)} bytes; the limit is {max_bytes} bytes "
            f"(server.max_body_bytes)"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise RequestTooLarge(
                        f"Request body exceeds the limit of {max_bytes} bytes "
                        f"(server.max_body_bytes)"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout_s:g}s (server.body_timeout_s)"
        ) from None
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("Request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"Request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    if too_deep(body, MAX_JSON_DEPTH):
        raise InvalidRequest(f"Request body is nested more than {MAX_JSON_DEPTH} levels deep")
    return body


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def validate_chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        got = first.get("input")
        shown = orjson.dumps(got).decode()[:80] if _jsonable(got) else type(got).__name__
        if first["type"] == "missing":
            message = f"Missing required parameter: '{where}'"
        else:
            message = f"Invalid value for '{where}': {first['msg']} (got {shown})"
        if len(e.errors()) > 1:
            message += f"; and {len(e.errors()) - 1} more problem(s)"
        raise InvalidRequest(message, param=where) from None


def _jsonable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True
