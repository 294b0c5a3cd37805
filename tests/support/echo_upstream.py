"""A tiny, fast OpenAI-compatible upstream for tests and benchmarks (never for production).

It answers at once, so that what a benchmark measures is the gateway, not the model. Built
on asyncio's protocol API and httptools (the parser uvicorn uses) to serve tens of thousands
of requests a second. The requested model name picks a behaviour, for tests:

- ``fail-500`` / ``fail-429`` / ``fail-400``: answer with that status and an OpenAI error body;
- ``slow-<seconds>``: wait before answering (timeouts);
- ``stream-then-hang``: send one chunk, then nothing (timeouts and disconnects mid-stream);
- ``tool-call``: given ``tools``, call the first one (streamed in OpenAI's chunk form), and
  ``tool-call-repeating``: the same, with the call's id and name repeated in every chunk
  (as llama-cpp-python streams it);
- ``tools...``, with ``tools`` in the request and a user message last: call the first tool,
  every argument of its schema set to the user's text (streamed: arguments in pieces);
- anything else: echo the last user message back, with usage.

``/embeddings`` answers each input with ``[number of words, number of characters, 1.0]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httptools
import orjson


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-echo",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _embeddings(request: dict[str, Any]) -> bytes:
    texts = request.get("input")
    texts = [texts] if isinstance(texts, str) else texts or []
    data = [{"object": "embedding", "index": i,
             "embedding": [float(len(str(t).split())), float(len(str(t))), 1.0]}
            for i, t in enumerate(texts)]  # fmt: skip
    words = sum(len(str(t).split()) for t in texts)
    usage = {"prompt_tokens": words, "total_tokens": words}
    return orjson.dumps(
        {"object": "list", "data": data, "model": request.get("model"), "usage": usage}
    )


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        #: The trace-context headers of each chat request, in order (the first 1000).
        self.trace_headers: list[dict[str, str]] = []
        self.open_streams = 0
        self.cancelled_streams = 0


class _Protocol(asyncio.Protocol):
    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.trace: dict[str, str] = {}
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for t in self.tasks:
            t.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(400, b'{"error":{"message":"bad request"}}')

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_begin(self) -> None:
        self.url, self.body, self.trace = b"", [], {}

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key in (b"traceparent", b"tracestate"):
            self.trace[key.decode()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.stats.requests += 1
        path = self.url.split(b"?")[0]
        if path.endswith(b"/models"):
            self._send(200, b'{"object":"list","data":[{"id":"echo","object":"model"}]}')
            return
        if path.endswith(b"/embeddings"):
            self._send(200, _embeddings(orjson.loads(b"".join(self.body))))
            return
        if not path.endswith(b"/chat/completions"):
            self._send(404, b'{"error":{"message":"not found"}}')
            return
        request = orjson.loads(b"".join(self.body))
        if len(self.stats.bodies) < 1000:
            self.stats.bodies.append(request)
            self.stats.trace_headers.append(self.trace)
        task = asyncio.ensure_future(self._answer(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _send(self, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
        assert self.transport is not None
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 429: b"Too Many Requests",
                  500: b"Internal Server Error"}.get(status, b"Status")  # fmt: skip
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason, content_type, len(body), body)
        )

    async def _answer(self, request: dict[str, Any]) -> None:
        model = str(request.get("model", "echo"))
        if model.startswith("fail-"):
            status = int(model[5:])
            error = {"message": f"echo upstream fails with {status}", "type": "test"}
            self._send(status, orjson.dumps({"error": error}))
            return
        if model.startswith("slow-"):
            await asyncio.sleep(float(model[5:]))
        if model.startswith("tool-call") and request.get("tools"):
            self._call_tool(request, model)
            return
        messages = request.get("messages") or [{}]
        text = str(messages[-1].get("content", ""))
        usage = {"prompt_tokens": len(text.split()) + 1, "completion_tokens": len(text.split()),
                 "total_tokens": 2 * len(text.split()) + 1}  # fmt: skip
        call = _echo_call(request, text) if model.startswith("tools") else None
        if call is not None:
            await self._echo_tool_call(request, model, call, usage)
            return
        if not request.get("stream"):
            body = {
                "id": "chatcmpl-echo", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": usage,
            }  # fmt: skip
            self._send(200, orjson.dumps(body))
            return
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        self.stats.open_streams += 1
        try:
            events = [_chunk(model, {"role": "assistant", "content": ""})]
            events += [_chunk(model, {"content": w + " "}) for w in text.split()] or []
            events.append(_chunk(model, {}, "stop"))
            if (request.get("stream_options") or {}).get("include_usage"):
                last = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 0,
                        "model": model, "choices": [], "usage": usage}  # fmt: skip
                events.append(b"data: " + orjson.dumps(last) + b"\n\n")
            events.append(b"data: [DONE]\n\n")
            for i, event in enumerate(events):
                self.transport.write(b"%x\r\n%s\r\n" % (len(event), event))
                if model == "stream-then-hang" and i == 0:
                    await asyncio.sleep(3600)
            self.transport.write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            self.stats.cancelled_streams += 1
            raise
        finally:
            self.stats.open_streams -= 1

    def _call_tool(self, request: dict[str, Any], model: str) -> None:
        name = str(request["tools"][0]["function"]["name"])
        pieces = ['{"city": ', '"Paris"', "}"]
        call_id = "call_echo_1"
        usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
        if not request.get("stream"):
            call = {"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": "".join(pieces)}}  # fmt: skip
            body = {
                "id": "chatcmpl-echo", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "tool_calls",
                             "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
                "usage": usage,
            }  # fmt: skip
            self._send(200, orjson.dumps(body))
            return
        if model == "tool-call-repeating":
            deltas = [
                {"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                 "function": {"name": name, "arguments": p}}]}
                for p in pieces
            ]  # fmt: skip
        else:
            first = {"index": 0, "id": call_id, "type": "function",
                     "function": {"name": name, "arguments": ""}}  # fmt: skip
            deltas = [{"tool_calls": [first]}]
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
        events = [_chunk(model, {"role": "assistant", "content": None})]
        events += [_chunk(model, d) for d in deltas]
        events.append(_chunk(model, {}, "tool_calls"))
        if (request.get("stream_options") or {}).get("include_usage"):
            last = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [], "usage": usage}  # fmt: skip
            events.append(b"data: " + orjson.dumps(last) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
            + b"0\r\n\r\n"
        )

    async def _echo_tool_call(
        self, request: dict[str, Any], model: str, call: dict[str, Any], usage: dict[str, Any]
    ) -> None:
        if not request.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            body = {"id": "chatcmpl-echo", "object": "chat.completion", "created": 0,
                    "model": model, "usage": usage,
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}  # fmt: skip
            self._send(200, orjson.dumps(body))
            return
        assert self.transport is not None
        arguments = call["function"]["arguments"]
        head = {**call, "index": 0, "function": {**call["function"], "arguments": ""}}
        events = [_chunk(model, {"role": "assistant", "content": None, "tool_calls": [head]})]
        events += [
            _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 5]}}]})
            for i in range(0, len(arguments), 5)
        ]  # fmt: skip
        events.append(_chunk(model, {}, "tool_calls"))
        if (request.get("stream_options") or {}).get("include_usage"):
            last = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [], "usage": usage}  # fmt: skip
            events.append(b"data: " + orjson.dumps(last) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
            + b"0\r\n\r\n"
        )


def _echo_call(request: dict[str, Any], text: str) -> dict[str, Any] | None:
    tools = request.get("tools") or []
    messages = request.get("messages") or [{}]
    if not tools or request.get("tool_choice") == "none" or messages[-1].get("role") != "user":
        return None
    function = tools[0]["function"]
    props = (function.get("parameters") or {}).get("properties") or {"input": {}}
    arguments = orjson.dumps({name: text for name in props}).decode()
    return {"id": "call_echo_0", "type": "function",
            "function": {"name": function["name"], "arguments": arguments}}  # fmt: skip


class EchoUpstream:
    """Runs the echo server on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self) -> None:
        self.stats = _Stats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> EchoUpstream:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                loop.create_server(lambda: _Protocol(self.stats), sock=sock, backlog=1024)
            )
            ready.set()
            with contextlib.suppress(RuntimeError):
                loop.run_forever()
            server.close()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="echo-upstream")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)


@contextlib.contextmanager
def running_echo_upstream() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


def serve_forever(port: int) -> None:
    """Run the echo upstream in this process (for benchmarks: a separate process)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    stats = _Stats()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Protocol(stats), sock=sock, backlog=4096)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


if __name__ == "__main__":
    import sys

    serve_forever(int(sys.argv[1]))
    time.sleep(0)
