"""OpenAI chat JSON ↔ Anthropic Messages JSON, both ways, for the ``anthropic`` provider.

Pure functions and one stream translator, no I/O: the provider module sends what these make.
What is translated, and what is refused rather than silently dropped, is listed in
docs/providers.md. JSON mode (``response_format``) becomes a forced tool whose input schema
is the requested schema, and the tool's input comes back as the message's text: Anthropic
has no JSON mode, and a forced tool is the way its documentation gives for one. With tools
of the client's own in the same request, the schema is given as an instruction instead.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from polyroute.errors import InvalidRequest, UpstreamError
from polyroute.providers.base import JSON
from polyroute.providers.profiles import profile_for

#: Anthropic requires max_tokens; OpenAI clients often leave it out.
DEFAULT_MAX_TOKENS = 4096
#: The forced tool that carries a JSON-mode answer.
JSON_TOOL = "json_response"
#: reasoning_effort → extended thinking budget (tokens).
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def to_anthropic(body: JSON) -> JSON:
    """An Anthropic Messages request for the OpenAI chat request ``body``."""
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("n > 1 is not supported by Anthropic models", param="n")
    system: list[JSON] = []
    messages: list[JSON] = []
    for i, message in enumerate(body["messages"]):
        role = message.get("role")
        if role in ("system", "developer"):
            system += _blocks(message.get("content"), f"messages[{i}].content", images=False)
        elif role == "user":
            _append(messages, "user", _blocks(message.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            _append(messages, "assistant", _assistant_blocks(message, i))
        elif role in ("tool", "function"):
            _append(messages, "user", [_tool_result(message, i)])
        else:
            raise InvalidRequest(f"messages[{i}].role {role!r} is not supported", param="role")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out: JSON = {"model": body["model"], "messages": messages, "max_tokens": max_tokens}
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)  # Anthropic's range is 0..1
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    tools = [_tool(t, i) for i, t in enumerate(body.get("tools") or [])]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    schema = _json_schema(body.get("response_format"))
    if schema is not None:
        if tools:
            system.append({"type": "text", "text": _json_instruction(schema)})
        else:
            tools = [{"name": JSON_TOOL, "description": "Give the answer.", "input_schema": schema}]
            choice = {"type": "tool", "name": JSON_TOOL}
    if tools:
        out["tools"] = tools
    if choice is not None and tools:
        out["tool_choice"] = choice
    if system:
        out["system"] = system
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort in THINKING_BUDGETS and _thinks(body):
        budget = THINKING_BUDGETS[effort]
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        out["max_tokens"] = max(int(max_tokens), budget + 1024)
        out.pop("temperature", None)  # thinking does not take a temperature
    if body.get("stream"):
        out["stream"] = True
    return out


def _thinks(body: JSON) -> bool:
    """False for a Claude known not to think (3.5 and older): its request gets no thinking."""
    return profile_for(str(body.get("model") or "")).thinks is not False


def _append(messages: list[JSON], role: str, blocks: list[JSON]) -> None:
    # Tool results of one turn must share one user message; adjacent turns of one role merge.
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _blocks(content: Any, where: str, *, images: bool = True) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            block: JSON = {"type": "text", "text": str(part.get("text", ""))}
        elif kind == "image_url" and images:
            block = {
                "type": "image",
                "source": image_source(part.get("image_url"), f"{where}[{j}]"),
            }
        elif kind == "file" and images:
            block = {"type": "document", "source": _file_source(part.get("file"), f"{where}[{j}]")}
        else:
            raise InvalidRequest(
                f"{where}[{j}]: content part {kind!r} is not supported by Anthropic models here",
                param=f"{where}[{j}].type",
            )
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]  # prompt caching, as sent
        blocks.append(block)
    return blocks


def _file_source(file: Any, where: str) -> JSON:
    data = file.get("file_data") if isinstance(file, dict) else None
    if isinstance(data, str) and data.startswith("data:"):
        header, _, payload = data[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding == "base64" and payload:
            return {"type": "base64", "media_type": media_type, "data": payload}
    raise InvalidRequest(
        f"{where}: a file part must carry file_data as a base64 data URL (file ids are "
        "OpenAI's own)",
        param=where,
    )


def image_source(image: Any, where: str) -> JSON:
    """An Anthropic image source for an OpenAI ``image_url`` (a data URL or a plain URL)."""
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}: image_url.url is missing", param=where)
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise InvalidRequest(f"{where}: a data URL image must be base64", param=where)
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _assistant_blocks(message: JSON, i: int) -> list[JSON]:
    # Thinking blocks come back first, signed, as Anthropic requires them before a tool
    # result when thinking is on (the client got them as ``thinking_blocks``).
    blocks = [
        b
        for b in message.get("thinking_blocks") or []
        if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")
    ]
    blocks += _blocks(message.get("content"), f"messages[{i}].content", images=False)
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                f"messages[{i}].tool_calls[{j}].function.arguments is not JSON",
                param=f"messages[{i}].tool_calls[{j}]",
            ) from None
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": parsed,
            }
        )
    return blocks


def _tool_result(message: JSON, i: int) -> JSON:
    if not message.get("tool_call_id"):
        raise InvalidRequest(f"messages[{i}].tool_call_id is required", param="tool_call_id")
    content = message.get("content")
    result: JSON = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    if isinstance(content, list):
        result["content"] = _blocks(content, f"messages[{i}].content")
    else:
        result["content"] = content or ""
    return result


def _tool(tool: JSON, i: int) -> JSON:
    function = tool.get("function") if tool.get("type") == "function" else None
    if not isinstance(function, dict) or not function.get("name"):
        raise InvalidRequest(f"tools[{i}] must be a function tool with a name", param="tools")
    out: JSON = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> JSON | None:
    if choice is None:
        out: JSON | None = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise InvalidRequest(f"tool_choice {choice!r} is not supported", param="tool_choice")
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _json_schema(response_format: Any) -> JSON | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


def _json_instruction(schema: JSON) -> str:
    return (
        "Answer with one JSON value only, no prose, that validates against this JSON schema: "
        + orjson.dumps(schema).decode()
    )


def openai_usage(usage: Any) -> JSON:
    """Anthropic usage as OpenAI's: prompt tokens include cache reads and cache writes."""
    usage = usage if isinstance(usage, dict) else {}
    fresh = int(usage.get("input_tokens") or 0)
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    output = int(usage.get("output_tokens") or 0)
    prompt = fresh + read + written
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
    }


def from_anthropic(data: JSON, *, json_mode: bool) -> JSON:
    """The OpenAI chat completion for an Anthropic message."""
    texts: list[str] = []
    thinking: list[str] = []
    signed: list[JSON] = []
    calls: list[JSON] = []
    for block in data.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking", "")))
            signed.append(block)
        elif kind == "redacted_thinking":
            signed.append(block)
        elif kind == "tool_use" and json_mode and block.get("name") == JSON_TOOL:
            texts.append(orjson.dumps(block.get("input")).decode())
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
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if signed:
        message["thinking_blocks"] = signed  # LiteLLM's name: clients send them back as is
    if calls:
        message["tool_calls"] = calls
    finish = finish_reason(data.get("stop_reason"))
    if json_mode and finish == "tool_calls" and not calls:
        finish = "stop"
    return {
        "id": data.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": openai_usage(data.get("usage")),
    }


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(str(stop_reason), "stop")


class StreamTranslator:
    """Anthropic's stream events in, OpenAI ``chat.completion.chunk`` objects out.

    Anthropic sends ``message_start``, then per content block ``content_block_start``,
    ``content_block_delta``s and ``content_block_stop``, then ``message_delta`` (stop
    reason, output tokens so far) and ``message_stop``; ``ping`` may come at any time. A
    tool call's id and name go out once, in its first chunk, then its arguments in pieces.
    """

    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.usage: JSON = {}
        #: content block index → (OpenAI tool call index, or -1 for JSON-mode text)
        self._tools: dict[int, int] = {}
        self._finish: str | None = None
        #: Whether ``message_stop`` came: a stream that ends before it was cut short.
        self.complete = False

    def feed(self, event: str, data: JSON) -> list[JSON]:
        kind = data.get("type", event)
        if kind == "message_start":
            message = data.get("message") or {}
            self.id, self.model = str(message.get("id", "")), str(message.get("model", ""))
            self.usage = dict(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(int(data.get("index", 0)), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(int(data.get("index", 0)), data.get("delta") or {})
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            stop = (data.get("delta") or {}).get("stop_reason")
            self._finish = finish_reason(stop)
            if self.json_mode and self._finish == "tool_calls" and not self._real_tools():
                self._finish = "stop"
            return [self._chunk({}, self._finish)]
        if kind == "message_stop":
            self.complete = True
            return [{**self._chunk({}), "choices": [], "usage": openai_usage(self.usage)}]
        if kind == "error":
            error = data.get("error") or {}
            raise UpstreamError(
                f"Anthropic stream failed: {error.get('type', 'error')}: "
                f"{error.get('message', 'no detail')}"
            )
        return []  # ping, content_block_stop, and event types added after this was written

    def _real_tools(self) -> bool:
        return any(i >= 0 for i in self._tools.values())

    def _block_start(self, index: int, block: JSON) -> list[JSON]:
        kind = block.get("type")
        if kind == "tool_use":
            if self.json_mode and block.get("name") == JSON_TOOL:
                self._tools[index] = -1
                return []
            n = sum(1 for i in self._tools.values() if i >= 0)
            self._tools[index] = n
            call = {
                "index": n,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _delta(self, index: int, delta: JSON) -> list[JSON]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if kind == "thinking_delta":
            return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
        if kind == "input_json_delta":
            piece = delta.get("partial_json", "")
            n = self._tools.get(index, 0)
            if n < 0:
                return [self._chunk({"content": piece})]
            return [self._chunk({"tool_calls": [{"index": n, "function": {"arguments": piece}}]})]
        return []  # signature_delta and the like carry nothing an OpenAI client reads

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
