"""OpenAI chat JSON ↔ Gemini ``generateContent`` JSON, both ways, for the ``gemini`` provider.

Pure functions and one stream translator, no I/O. Gemini's JSON schemas (function
parameters, ``responseSchema``) are an OpenAPI subset: keys outside it (``$schema``,
``additionalProperties``, ``strict``, ...) are dropped from the schemas sent, since Gemini
refuses a request that has them. What is translated and what is refused is listed in
docs/providers.md.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from polyroute.errors import InvalidRequest
from polyroute.providers.base import JSON
from polyroute.providers.profiles import profile_for

#: reasoning_effort → thinkingConfig.thinkingBudget (tokens; 0 turns thinking off).
THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
_SCHEMA_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "propertyOrdering",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "default",
    "example",
}
_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}


def to_gemini(body: JSON) -> JSON:
    """A ``generateContent`` request for the OpenAI chat request ``body`` (model in the URL)."""
    system: list[JSON] = []
    contents: list[JSON] = []
    names: dict[str, str] = {}  # tool call id → function name, for the results that follow
    for i, message in enumerate(body["messages"]):
        role = message.get("role")
        where = f"messages[{i}].content"
        if role in ("system", "developer"):
            system += _parts(message.get("content"), where, images=False)
        elif role == "user":
            _append(contents, "user", _parts(message.get("content"), where))
        elif role == "assistant":
            parts = _parts(message.get("content"), where, images=False)
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                names[str(call.get("id"))] = str(function.get("name"))
                part: JSON = {
                    "functionCall": {"name": function.get("name"), "args": _arguments(function, i)}
                }
                signature = _signature(call)
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            _append(contents, "model", parts)
        elif role in ("tool", "function"):
            name = names.get(str(message.get("tool_call_id"))) or message.get("name")
            if not name:
                raise InvalidRequest(
                    f"messages[{i}]: a tool result must answer a tool call of an earlier "
                    "assistant message (Gemini needs the function's name)",
                    param="tool_call_id",
                )
            response = {"name": name, "response": _tool_response(message.get("content"))}
            _append(contents, "user", [{"functionResponse": response}])
        else:
            raise InvalidRequest(f"messages[{i}].role {role!r} is not supported", param="role")
    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    tools = [_declaration(t, i) for i, t in enumerate(body.get("tools") or [])]
    if tools:
        out["tools"] = [{"functionDeclarations": tools}]
    choice = _tool_config(body.get("tool_choice"))
    if choice is not None and tools:
        out["toolConfig"] = {"functionCallingConfig": choice}
    return out


def _append(contents: list[JSON], role: str, parts: list[JSON]) -> None:
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _parts(content: Any, where: str, *, images: bool = True) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": str(part.get("text", ""))})
        elif kind == "image_url" and images:
            parts.append(_image(part.get("image_url"), f"{where}[{j}]"))
        elif kind == "file" and images:
            file = part.get("file") if isinstance(part.get("file"), dict) else {}
            parts.append(_image({"url": file.get("file_data")}, f"{where}[{j}]"))
        else:
            raise InvalidRequest(
                f"{where}[{j}]: content part {kind!r} is not supported by Gemini models here",
                param=f"{where}[{j}].type",
            )
    return parts


def _image(image: Any, where: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if encoding == "base64" and data:
            return {"inlineData": {"mimeType": mime, "data": data}}
    if isinstance(url, str) and url.startswith(("gs://", "https://generativelanguage.")):
        return {"fileData": {"fileUri": url}}
    raise InvalidRequest(
        f"{where}: Gemini takes images as base64 data URLs (or Gemini file URIs), not as web URLs",
        param=where,
    )


def _arguments(function: JSON, i: int) -> Any:
    arguments = function.get("arguments") or "{}"
    if not isinstance(arguments, str):
        return arguments
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"messages[{i}]: tool call arguments are not JSON", param=f"messages[{i}]"
        ) from None


def _tool_response(content: Any) -> JSON:
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if isinstance(content, str):
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return {"result": content}


def clean_schema(schema: Any) -> Any:
    """``schema`` with only the keys Gemini's Schema type accepts, at every depth."""
    if isinstance(schema, list):
        return [clean_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: JSON = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = clean_schema(value)
        else:
            out[key] = value
    return out


def _declaration(tool: JSON, i: int) -> JSON:
    function = tool.get("function") if tool.get("type") == "function" else None
    if not isinstance(function, dict) or not function.get("name"):
        raise InvalidRequest(f"tools[{i}] must be a function tool with a name", param="tools")
    out: JSON = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    if function.get("parameters"):
        out["parameters"] = clean_schema(function["parameters"])
    return out


def _tool_config(choice: Any) -> JSON | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    raise InvalidRequest(f"tool_choice {choice!r} is not supported", param="tool_choice")


def _generation_config(body: JSON) -> JSON:
    config: JSON = {}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    ):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        spec = rf.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            config["responseSchema"] = clean_schema(spec["schema"])
    effort = body.get("reasoning_effort")
    # Gemini 2.0 and older refuse a thinking config: its profile says they do not think.
    thinks = profile_for(str(body.get("model") or "")).thinks is not False
    if isinstance(effort, str) and effort in THINKING_BUDGETS and thinks:
        budget = THINKING_BUDGETS[effort]
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    return config


def openai_usage(meta: Any) -> JSON:
    """Gemini's usageMetadata as OpenAI usage: thinking counts as (and in) completion tokens,
    as OpenAI counts reasoning tokens; the prompt includes cached and tool-use prompt tokens."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(meta.get("cachedContentTokenCount") or 0)},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def finish_reason(reason: Any, has_calls: bool) -> str | None:
    if reason is None:
        return None
    if reason in _FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_calls else "stop"


def _call(part: JSON) -> JSON:
    call = part["functionCall"]
    out: JSON = {
        "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
        "type": "function",
        "function": {
            "name": call.get("name"),
            "arguments": orjson.dumps(call.get("args") or {}).decode(),
        },
    }
    if isinstance(part.get("thoughtSignature"), str):
        # Thinking models want the signature back with the call; Google's own OpenAI layer
        # carries it here, and OpenAI clients send unknown tool-call fields back as they are.
        out["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return out


def _signature(call: JSON) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) else None


def _split(parts: list[JSON]) -> tuple[str, str, list[JSON]]:
    """(answer text, thought text, tool calls) of a candidate's parts."""
    text: list[str] = []
    thought: list[str] = []
    calls: list[JSON] = []
    for part in parts:
        if "functionCall" in part:
            calls.append(_call(part))
        elif isinstance(part.get("text"), str):
            (thought if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(thought), calls


def from_gemini(data: JSON, model: str) -> JSON:
    """The OpenAI chat completion for a ``generateContent`` response."""
    choices = []
    for n, candidate in enumerate(data.get("candidates") or []):
        parts = (candidate.get("content") or {}).get("parts") or []
        text, thought, calls = _split(parts)
        message: JSON = {"role": "assistant", "content": text or (None if calls else "")}
        if thought:
            message["reasoning_content"] = thought
        if calls:
            message["tool_calls"] = calls
        finish = finish_reason(candidate.get("finishReason") or "STOP", bool(calls))
        choices.append(
            {
                "index": candidate.get("index", n),
                "message": message,
                "finish_reason": finish,
                "logprobs": None,
            }
        )
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ""},
                "finish_reason": "content_filter",
                "logprobs": None,
            }
        ]
    return {
        "id": f"chatcmpl-{data.get('responseId') or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("modelVersion") or model,
        "choices": choices,
        "usage": openai_usage(data.get("usageMetadata")),
    }


class StreamTranslator:
    """``streamGenerateContent?alt=sse`` responses in, OpenAI chunks out.

    Each Gemini event holds the next parts of each candidate: text in pieces, a function call
    whole (so its arguments go out in one piece, with its id and name). The last event's
    ``usageMetadata`` is the request's; :meth:`end` turns it into OpenAI's usage chunk.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.usage: JSON | None = None
        self._started = False
        self._calls: dict[int, int] = {}  # candidate index → tool calls sent so far
        #: Whether a finish reason came: a stream that ends before one was cut short.
        self.complete = False

    def feed(self, data: JSON) -> list[JSON]:
        out: list[JSON] = []
        if not self._started:
            self._started = True
            out.append(self._chunk(0, {"role": "assistant", "content": ""}))
        if data.get("usageMetadata"):
            self.usage = data["usageMetadata"]
        for n, candidate in enumerate(data.get("candidates") or []):
            index = candidate.get("index", n)
            text, thought, calls = _split((candidate.get("content") or {}).get("parts") or [])
            if thought:
                out.append(self._chunk(index, {"reasoning_content": thought}))
            if text:
                out.append(self._chunk(index, {"content": text}))
            if calls:
                first = self._calls.get(index, 0)
                self._calls[index] = first + len(calls)
                deltas = [{"index": first + k, **c} for k, c in enumerate(calls)]
                out.append(self._chunk(index, {"tool_calls": deltas}))
            reason = candidate.get("finishReason")
            if reason:
                self.complete = True
                finish = finish_reason(reason, self._calls.get(index, 0) > 0)
                out.append(self._chunk(index, {}, finish))
        if not data.get("candidates") and (data.get("promptFeedback") or {}).get("blockReason"):
            self.complete = True
            out.append(self._chunk(0, {}, "content_filter"))
        return out

    def end(self) -> list[JSON]:
        if self.usage is None:
            return []
        return [{**self._chunk(0, {}), "choices": [], "usage": openai_usage(self.usage)}]

    def _chunk(self, index: int, delta: JSON, finish: str | None = None) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
            ],
        }
