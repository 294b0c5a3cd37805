"""A fake Gemini API (``generativelanguage`` v1beta) on 127.0.0.1, from Google's API reference.

It checks what the real API checks and a translation could get wrong: the key in the
``x-goog-api-key`` header, roles ``user``/``model`` only, one data field per part, unknown
fields refused (``Invalid JSON payload received. Unknown name ...``, as the real API answers
for e.g. ``additionalProperties`` in a schema), function responses answering the function
calls of the turn before. Errors are Google's: ``{"error": {"code", "message", "status"}}``.

It answers like an echo: the user's text (images as ``[image <mimeType>]``) cut at a stop
sequence or at ``maxOutputTokens`` words; with ``responseMimeType: application/json`` a JSON
value made from ``responseSchema``; with function declarations, a call of the first (or the
only allowed) function with its string arguments set to the user's text; after function
responses, ``tool said: <response>``. Each function call carries a ``thoughtSignature``
that must come back with it (as Gemini 3 requires). A thinking budget above 0 adds a thought (3 tokens).
Usage counts words; a system instruction seen before is reported as cached
(``cachedContentTokenCount``, as implicit caching does). Streams
(``:streamGenerateContent?alt=sse``) send text a word per event, a function call whole, and
the finish reason with the usage last. Models ``overloaded`` (503) and ``limited`` (429) fail; ``stream-cut`` ends a stream early.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

KEY = "test-gemini-key"
_TOP = {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig",
        "safetySettings", "cachedContent"}  # fmt: skip
_CONFIG = {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount",
           "responseMimeType", "responseSchema", "thinkingConfig", "seed", "presencePenalty",
           "frequencyPenalty"}  # fmt: skip
_SCHEMA = {"type", "format", "title", "description", "nullable", "enum", "items", "maxItems",
           "minItems", "properties", "required", "propertyOrdering", "anyOf", "minimum",
           "maximum", "minLength", "maxLength", "pattern", "default", "example"}  # fmt: skip
_PART = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}


class Invalid(Exception):
    def __init__(self, message: str, code: int = 400, status: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.code, self.status = code, status


def _error(code: int, status: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, code)


class FakeGemini:
    """The app, and what it received."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.urls: list[str] = []
        self._systems: set[str] = set()
        self._signatures: set[str] = set()
        self.app = Starlette(routes=[Route("/v1beta/models/{rest:path}", self.route,
                                           methods=["GET", "POST"])])  # fmt: skip

    async def route(self, request: Request) -> Response:
        self.urls.append(str(request.url))
        if request.headers.get("x-goog-api-key") != KEY:
            return _error(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."
            )
        if "key" in request.query_params:
            return _error(400, "INVALID_ARGUMENT", "this fake wants the key in the header")
        rest = request.path_params["rest"]
        if request.method == "GET":
            return JSONResponse({"name": f"models/{rest}", "displayName": rest})
        model, _, method = rest.partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, "NOT_FOUND", f"method {method!r} not found")
        stream = method == "streamGenerateContent"
        if stream and request.query_params.get("alt") != "sse":
            return _error(400, "INVALID_ARGUMENT", "this fake streams only with alt=sse")
        body = await request.json()
        self.bodies.append(body)
        try:
            _validate(body)
            for content in body["contents"]:
                for part in content["parts"]:
                    if (
                        "functionCall" in part
                        and part.get("thoughtSignature") not in self._signatures
                    ):
                        raise Invalid(
                            "Function call is missing a thought_signature in functionCall parts"
                        )
        except Invalid as e:
            return _error(e.code, e.status, str(e))
        if model == "overloaded":
            return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if model == "limited":
            return _error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted")
        answer = self._answer(model, body)
        if stream:
            return StreamingResponse(self._events(answer), media_type="text/event-stream")
        return JSONResponse(answer)

    def _answer(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        parts = body["contents"][-1]["parts"]
        config = body.get("generationConfig") or {}
        declarations = [
            d for t in body.get("tools") or [] for d in t.get("functionDeclarations", [])
        ]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        text = " ".join(_describe(p) for p in parts if "text" in p or "inlineData" in p)
        finish = "STOP"
        out: list[dict[str, Any]] = []
        thinking = config.get("thinkingConfig") or {}
        thoughts = 3 if thinking.get("thinkingBudget", 0) > 0 else 0
        if thoughts and thinking.get("includeThoughts"):
            out.append({"text": "thinking it over", "thought": True})
        if responses:
            said = " ".join(json.dumps(r["response"]) for r in responses)
            out.append({"text": f"tool said: {said}"})
        elif declarations and calling.get("mode", "AUTO") != "NONE":
            allowed = calling.get("allowedFunctionNames") or [declarations[0]["name"]]
            function = next(d for d in declarations if d["name"] == allowed[0])
            args = _sample(function.get("parameters") or {"type": "object"}, text)
            signature = f"sig-{function['name']}-{len(self.bodies)}"
            self._signatures.add(signature)
            call = {"functionCall": {"name": function["name"], "args": args}}
            out.append({**call, "thoughtSignature": signature})
        elif config.get("responseMimeType") == "application/json":
            out.append(
                {
                    "text": json.dumps(
                        _sample(config.get("responseSchema") or {"type": "object"}, text)
                    )
                }
            )
        else:
            words = text.split()
            for seq in config.get("stopSequences") or []:
                if seq in words:
                    words = words[: words.index(seq)]
            if len(words) > config.get("maxOutputTokens", 10**9):
                words, finish = words[: config["maxOutputTokens"]], "MAX_TOKENS"
            out.append({"text": " ".join(words)})
        system = " ".join(
            p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts", [])
        )
        prompt = len(system.split()) + sum(
            len(_describe(p).split()) for c in body["contents"] for p in c["parts"]
        )
        cached = len(system.split()) if system and system in self._systems else 0
        self._systems.add(system)
        answered = sum(len(_describe(p).split()) for p in out if not p.get("thought"))
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": answered,
                 "totalTokenCount": prompt + answered + thoughts}  # fmt: skip
        if cached:
            usage["cachedContentTokenCount"] = cached
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return {
            "candidates": [{"content": {"role": "model", "parts": out}, "finishReason": finish,
                            "index": 0}],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": f"resp-{len(self.bodies)}",
        }  # fmt: skip

    async def _events(self, answer: dict[str, Any]) -> AsyncIterator[bytes]:
        candidate = answer["candidates"][0]
        pieces: list[dict[str, Any]] = []
        for part in candidate["content"]["parts"]:
            if "text" in part and not part.get("thought"):
                words = part["text"].split(" ")
                pieces += [{"text": w if i == 0 else " " + w} for i, w in enumerate(words)]
            else:
                pieces.append(part)
        for piece in pieces:
            event = {"candidates": [{"content": {"role": "model", "parts": [piece]}, "index": 0}],
                     "modelVersion": answer["modelVersion"]}  # fmt: skip
            yield b"data: " + json.dumps(event).encode() + b"\r\n\r\n"
        if answer["modelVersion"] == "stream-cut":
            return  # ends cleanly, but with no finishReason: cut short
        last = {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                "finishReason": candidate["finishReason"], "index": 0}],
                "usageMetadata": answer["usageMetadata"], "modelVersion": answer["modelVersion"]}  # fmt: skip
        yield b"data: " + json.dumps(last).encode() + b"\r\n\r\n"


def _describe(part: dict[str, Any]) -> str:
    if "inlineData" in part:
        return f"[image {part['inlineData']['mimeType']}]"
    if "functionCall" in part:
        return json.dumps(part["functionCall"]["args"])
    if "functionResponse" in part:
        return json.dumps(part["functionResponse"]["response"])
    return str(part.get("text", ""))


def _sample(schema: dict[str, Any], text: str) -> Any:
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        return {k: _sample(v, text) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(schema.get("items") or {"type": "string"}, text)]
    return {"integer": 1, "number": 1.5, "boolean": True}.get(kind, text)


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key not in _SCHEMA:
            raise Invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}'")
        if key == "properties":
            for name, sub in value.items():
                _check_schema(sub, f"{where}.properties[{name}]")
        elif key == "items":
            _check_schema(value, f"{where}.items")


def _validate(body: dict[str, Any]) -> None:
    for key in body:
        if key not in _TOP:
            raise Invalid(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            )
    for key in body.get("generationConfig") or {}:
        if key not in _CONFIG:
            raise Invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config'"
            )
    _check_schema(
        (body.get("generationConfig") or {}).get("responseSchema"),
        "generation_config.response_schema",
    )
    if not body.get("contents"):
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    calls: list[str] = []
    for i, content in enumerate(body["contents"]):
        if content.get("role") not in ("user", "model"):
            raise Invalid(f"Please use a valid role: user, model. (contents[{i}])")
        if not content.get("parts"):
            raise Invalid(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        for part in content["parts"]:
            if len(set(part) & _PART) != 1 or set(part) - _PART - {"thought", "thoughtSignature"}:
                raise Invalid(
                    f"contents[{i}]: a part must hold exactly one data field, not {sorted(part)}"
                )
        answered = [
            p["functionResponse"]["name"] for p in content["parts"] if "functionResponse" in p
        ]
        if answered and sorted(answered) != sorted(calls):
            raise Invalid(
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
        calls = [p["functionCall"]["name"] for p in content["parts"] if "functionCall" in p]
    for tool in body.get("tools") or []:
        for d in tool.get("functionDeclarations") or []:
            _check_schema(
                d.get("parameters"), f"tools.function_declarations[{d.get('name')}].parameters"
            )
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
    if mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        raise Invalid(f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})")
