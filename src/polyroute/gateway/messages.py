"""``POST /v1/messages``: Anthropic's Messages API in front of the same chat path.

An Anthropic request is validated and translated into the OpenAI request
``/v1/chat/completions`` takes, then served by :class:`~polyroute.gateway.chat.ChatService`
itself, so routing (``model: "auto"`` or a router's name), fallbacks, recording, metrics and
the ``x-polyroute-*`` headers are the chat path's, unchanged. Its answer, or its stream, is
translated back; every error is Anthropic's error JSON, with the status the chat path gives.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message

from polyroute.errors import PolyrouteError, RateLimited, UpstreamError
from polyroute.gateway.chat import ChatService
from polyroute.gateway.messages_protocol import to_openai, validate_messages_request
from polyroute.gateway.messages_wire import MessageStream, error_json, to_message
from polyroute.gateway.protocol import read_json_body
from polyroute.providers.anthropic import AnthropicProvider

log = logging.getLogger(__name__)
_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def error_response(status: int, message: str) -> Response:
    return Response(error_json(status, message), status_code=status, media_type="application/json")


class MessagesService:
    """Serves Anthropic Messages requests through a :class:`ChatService`."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._serve(request)
        except PolyrouteError as e:
            return error_response(e.status_code, e.message)
        except Exception:
            log.exception("unhandled error in /v1/messages")
            return error_response(500, "The server had an error while processing your request")

    async def _serve(self, request: Request) -> Response:
        body = await read_json_body(request, self.chat.config.server.max_body_bytes)
        req = validate_messages_request(body)
        chat_request = _inner_request(request, orjson.dumps(to_openai(req, body)))
        answer = await self.chat(chat_request)
        headers = {k: v for k, v in answer.headers.items() if k.startswith("x-polyroute-")}
        trace_id = headers.get("x-polyroute-trace-id", "msg_unknown")
        if isinstance(answer, StreamingResponse):
            stream = MessageStream(trace_id, headers.get("x-polyroute-model", req.model))
            return StreamingResponse(
                _relay(answer.body_iterator, stream),
                media_type="text/event-stream",
                headers={**_STREAM_HEADERS, **headers},
            )
        data = orjson.loads(answer.body)
        if answer.status_code >= 400:  # an error answered rather than raised: same status
            error = data.get("error") if isinstance(data, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            return error_response(answer.status_code, str(text or "request failed"))
        message = to_message(data, trace_id)
        return Response(orjson.dumps(message), media_type="application/json", headers=headers)


class CountTokensService:
    """``POST /v1/messages/count_tokens``, which Claude-style tools call to size a context.

    A model on an Anthropic provider gets Anthropic's own count. Any other model (or a
    router, whose choice is not made until the request is) gets an estimate of 4 characters
    a token, the one routing uses, and says so in ``x-polyroute-token-count: estimate``.
    """

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    async def __call__(self, request: Request) -> Response:
        try:
            body = await read_json_body(request, self.chat.config.server.max_body_bytes)
            req = validate_messages_request({"max_tokens": 1, **body})
            chat_body = to_openai(req, body)
            target = None
            routers = self.chat.routers
            if routers is None or not routers.handles(req.model):
                target = self.chat.pool.resolve(req.model)
            if target is not None and isinstance(target.provider, AnthropicProvider):
                tokens = await target.provider.count_tokens(target.model, body)
                return _count(tokens, "exact")
            text = _all_text(chat_body["messages"])
            tools = orjson.dumps(chat_body.get("tools") or []).decode() if req.tools else ""
            return _count(max(1, (len(text) + len(tools)) // 4), "estimate")
        except PolyrouteError as e:
            return error_response(e.status_code, e.message)


def _all_text(messages: list[Any]) -> str:
    """Every text of a conversation (each turn counts toward the context, unlike what a
    router reads of it), tool calls' names and arguments included."""
    pieces: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, list):
            pieces += [str(p.get("text", "")) for p in content if p.get("type") == "text"]
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            pieces += [str(function.get("name", "")), str(function.get("arguments", ""))]
    return "\n".join(pieces)


def _count(tokens: int, how: str) -> Response:
    return Response(
        orjson.dumps({"input_tokens": tokens}),
        media_type="application/json",
        headers={"x-polyroute-token-count": how},
    )


def _inner_request(request: Request, body: bytes) -> Request:
    """The client's request with ``body`` as its body: what ChatService reads."""
    scope = dict(request.scope)
    scope["headers"] = [
        *((k, v) for k, v in request.scope["headers"] if k != b"content-length"),
        (b"content-length", str(len(body)).encode()),
    ]
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()  # a disconnect still reaches whoever listens

    return Request(scope, receive)


async def _relay(chunks: Any, stream: MessageStream) -> AsyncIterator[bytes]:
    """The chat path's SSE bytes (one ``data:`` event per piece) as Anthropic events."""
    yield stream.start()
    failed = done = False
    try:
        # Read to the end, [DONE] included: the chat path records the request as it ends,
        # and closing it early would record a client disconnect.
        async for piece in chunks:
            raw = piece.encode() if isinstance(piece, str) else bytes(piece)
            for event in raw.split(b"\n\n"):
                if event == b"data: [DONE]":
                    done = True
                if failed or done or not event.startswith(b"data: "):
                    continue
                chunk = orjson.loads(event[6:])
                if "error" in chunk and "choices" not in chunk:
                    failed = True
                    yield stream.error(_in_band_error(chunk["error"]))
                    continue
                out = stream.feed(chunk)
                if out:
                    yield out
        if done and not failed:
            yield stream.end()
        elif not failed:  # never pass a cut-off answer off as a whole one
            yield stream.error(UpstreamError("the answer ended before it was complete"))
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()  # a client that left cancels the upstream, as on the chat path


def _in_band_error(error: Any) -> PolyrouteError:
    message = str(error.get("message", "upstream error")) if isinstance(error, dict) else str(error)
    if isinstance(error, dict) and error.get("type") == "rate_limit_error":
        return RateLimited(message)
    return UpstreamError(message)
