"""Request types for Anthropic's Messages API, and their translation to OpenAI chat JSON.

``POST /v1/messages`` serves Anthropic clients (the ``anthropic`` SDK, Claude-style coding
tools) through the same chat path as ``/v1/chat/completions``: the request is validated
here, once, then turned into the OpenAI-shaped request every provider takes. Prompt-cache
marks (``cache_control``) ride along on the OpenAI content parts, so an Anthropic upstream
gets them back. What is not translated is refused with a 400 rather than dropped, except
``top_k`` and ``thinking``, which only tune sampling (docs/providers.md lists both).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polyroute.errors import InvalidRequest
from polyroute.providers.base import JSON


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(_Open):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def validate_messages_request(body: JSON) -> MessagesRequest:
    """The request, validated; errors name the field as Anthropic's do (``messages.0.role``)."""
    try:
        return MessagesRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "missing":
            message = f"{where}: Field required"
        else:
            message = f"{where}: {first['msg']}"
        if len(e.errors()) > 1:
            message += f"; and {len(e.errors()) - 1} more problem(s)"
        raise InvalidRequest(message, param=where) from None


def to_openai(req: MessagesRequest, body: JSON) -> JSON:
    """The OpenAI chat request that asks the same as the Anthropic request ``body``."""
    messages: list[JSON] = []
    if req.system:
        messages.append({"role": "system", "content": _system(req.system)})
    for i, message in enumerate(body["messages"]):
        if message["role"] == "user":
            messages += _user(message["content"], i)
        else:
            messages.append(_assistant(message["content"], i))
    out: JSON = {"model": req.model, "messages": messages, "max_tokens": req.max_tokens}
    if req.temperature is not None:
        out["temperature"] = req.temperature
    if req.top_p is not None:
        out["top_p"] = req.top_p
    if req.stop_sequences:
        out["stop"] = req.stop_sequences
    if req.tools:
        out["tools"] = [_tool(t, i) for i, t in enumerate(req.tools)]
    if req.tool_choice is not None and req.tools:
        out.update(_tool_choice(req.tool_choice))
    if req.metadata and isinstance(req.metadata.get("user_id"), str):
        out["user"] = req.metadata["user_id"]
    if req.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _system(system: str | list[dict[str, Any]]) -> str | list[JSON]:
    if isinstance(system, str):
        return system
    return [_text_part(b, f"system.{i}") for i, b in enumerate(system)]


def _text_part(block: dict[str, Any], where: str) -> JSON:
    if block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise InvalidRequest(f"{where}: expected a text block", param=where)
    part: JSON = {"type": "text", "text": block["text"]}
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _image_part(block: dict[str, Any], where: str) -> JSON:
    source = block.get("source") or {}
    if source.get("type") == "base64" and source.get("data") and source.get("media_type"):
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source.get("type") == "url" and source.get("url"):
        url = str(source["url"])
    else:
        raise InvalidRequest(f"{where}.source: expected a base64 or url image", param=where)
    part: JSON = {"type": "image_url", "image_url": {"url": url}}
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _user(content: str | list[dict[str, Any]], i: int) -> list[JSON]:
    """A user turn: its tool results become ``tool`` messages (first, as OpenAI wants them
    right after the assistant's calls), the rest one ``user`` message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(content):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, where))
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "document":
            parts.append(_document_part(block, where))
        elif kind == "tool_result":
            result, media = _tool_result(block, where)
            results.append(result)
            parts += media
        else:
            raise InvalidRequest(f"{where}: block type {kind!r} is not supported", param=where)
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _document_part(block: dict[str, Any], where: str) -> JSON:
    source = block.get("source") or {}
    if source.get("type") != "base64" or not source.get("data"):
        raise InvalidRequest(f"{where}.source: only base64 documents are supported", param=where)
    media_type = source.get("media_type") or "application/pdf"
    data_url = f"data:{media_type};base64,{source['data']}"
    file: JSON = {"file_data": data_url, "filename": str(block.get("title") or "document.pdf")}
    return {"type": "file", "file": file}


def _tool_result(block: dict[str, Any], where: str) -> tuple[JSON, list[JSON]]:
    """The ``tool`` message, and the images the result held: OpenAI's tool messages take
    text only, so those go to the user message that follows the results."""
    if not isinstance(block.get("tool_use_id"), str):
        raise InvalidRequest(f"{where}.tool_use_id: Field required", param=where)
    content = block.get("content", "")
    media: list[JSON] = []
    if isinstance(content, list):
        texts: list[str] = []
        for k, b in enumerate(content):
            if b.get("type") == "text":
                texts.append(str(b.get("text", "")))
            elif b.get("type") == "image":
                media.append(_image_part(b, f"{where}.content.{k}"))
            else:
                raise InvalidRequest(
                    f"{where}.content.{k}: tool results may hold text and images only"
                )
        content = "".join(texts)
    text = str(content)
    if block.get("is_error"):
        text = f"Error: {text}"  # OpenAI's tool message has no error flag
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}, media


def _assistant(content: str | list[dict[str, Any]], i: int) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):  # a model's own notes: not resent
            where = f"messages.{i}.content.{j}"
            raise InvalidRequest(f"{where}: block type {kind!r} is not supported", param=where)
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: dict[str, Any], i: int) -> JSON:
    if not isinstance(tool.get("name"), str) or "input_schema" not in tool:
        kind = tool.get("type", "custom")
        raise InvalidRequest(
            f"tools.{i}: only custom tools (name, input_schema) are supported, not {kind!r}",
            param=f"tools.{i}",
        )
    function: JSON = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> JSON:
    kind = choice.get("type")
    out: JSON
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise InvalidRequest(f"tool_choice.type {kind!r} is not supported", param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out
