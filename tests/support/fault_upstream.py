"""An OpenAI-compatible upstream on 127.0.0.1 that fails on request, for the fault suite.

It speaks HTTP/1.1 and OpenAI's chat-completions protocol byte for byte (JSON answers,
SSE streams with ``data: [DONE]``, OpenAI error bodies), written by hand on asyncio streams
so that it can also break the protocol the ways real upstreams do. The requested (upstream)
model name picks the behaviour:

- ``ok``: answer :data:`ANSWER`; streamed a word a chunk. A continuation request (the last
  message is the gateway's instruction to continue, after an assistant message holding a
  prefix of the answer) gets the rest of the answer, so a rescued stream reads as one;
- ``status-<code>[-ra<seconds>][-x<n>]``: answer ``<code>`` with an OpenAI error body (and
  ``Retry-After``); with ``-x<n>`` only the first ``n`` requests for that name fail;
- ``auth``: 401 whose message quotes a key, as OpenAI's does; ``context``: 400
  ``context_length_exceeded``;
- ``reset-body``: headers and half the body, then a TCP reset;
- ``late-headers``: never send the headers; ``trickle``: a byte every 0.2 s;
- ``cut-after-first``: a stream on a close-delimited body, closed after its first chunk;
- ``stall-after-first``: a stream that sends one chunk, then nothing;
- ``no-done``: a chunked stream that ends cleanly after two chunks, with no finish_reason
  and no ``[DONE]``;
- ``tool-cut``: a stream that sends half a tool call, then closes;
- ``bad-json``: 200 with a body that is not JSON; ``bad-sse``: a stream whose event is not
  JSON; ``html-200``: 200 with an HTML page (stream or not); ``empty-choices``: 200 with
  ``choices: []`` (a stream of such chunks); ``bad-usage``: usage with strings for counts;
  ``oversized``: an answer of 2 MB.

:func:`blackhole` gives a port that accepts no connection (its backlog is full), for
connects that hang without DNS or another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

ANSWER = "one two three four five six seven eight"
CONTINUE_MARK = "Continue it exactly from where it stopped"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 408: "Request Timeout", 409: "Conflict", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip


class FaultStats:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        #: Answers the upstream was still sending when the gateway closed the connection.
        self.abandoned = 0
        self.open = 0


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _completion(model: str, text: str, usage: Any = None) -> bytes:
    words = len(text.split())
    return orjson.dumps(
        {
            "id": "chatcmpl-fault",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage
            or {"prompt_tokens": 3, "completion_tokens": words, "total_tokens": 3 + words},
        }
    )


def answer_for(request: dict[str, Any]) -> str:
    """The whole answer, or its rest for a continuation of a prefix of it."""
    messages = request.get("messages") or []
    if (
        len(messages) >= 2
        and CONTINUE_MARK in str(messages[-1].get("content"))
        and messages[-2].get("role") == "assistant"
    ):
        prefix = str(messages[-2].get("content") or "")
        if ANSWER.startswith(prefix):
            return ANSWER[len(prefix) :]
    return ANSWER


class _Conn:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: FaultStats
    ) -> None:
        self.reader, self.writer, self.stats = reader, writer, stats

    def head(self, status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def send(
        self, status: int, body: bytes, ctype: str = "application/json", **extra: str
    ) -> None:
        headers = {"content-type": ctype, "content-length": str(len(body)), **extra}
        self.writer.write(self.head(status, headers) + body)
        await self.writer.drain()

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def hold(self) -> None:
        """Send nothing until the client closes the connection (counted as abandoned)."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(1024):
                pass
        self.stats.abandoned += 1

    async def serve(self) -> None:
        try:
            while True:
                head = await self.reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await self.reader.readexactly(int(headers.get("content-length", "0")))
                if path.endswith("/models"):
                    await self.send(200, b'{"object":"list","data":[]}')
                    continue
                request = orjson.loads(body)
                if len(self.stats.bodies) < 1000:
                    self.stats.bodies.append(request)
                try:
                    keep = await self.answer(request)
                except ConnectionError:
                    self.stats.abandoned += 1  # the client left mid-answer (writes failed)
                    return
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client closed the connection between requests
        except asyncio.CancelledError:
            return  # the server is stopping
        finally:
            with contextlib.suppress(Exception):
                self.writer.close()

    async def answer(self, request: dict[str, Any]) -> bool:
        """Answer one request; False: the connection is done."""
        model = str(request.get("model"))
        self.stats.requests[model] += 1
        stream = bool(request.get("stream"))
        n = self.stats.requests[model]
        if model.startswith("status-"):
            parts = model.split("-")
            status, extra, fails = int(parts[1]), {}, None
            for p in parts[2:]:
                if p.startswith("ra"):
                    extra["retry-after"] = p[2:]
                elif p.startswith("x"):
                    fails = int(p[1:])
            if fails is None or n <= fails:
                error = {"message": f"fault upstream fails with {status}", "type": "server_error",
                         "param": None, "code": None}  # fmt: skip
                await self.send(status, orjson.dumps({"error": error}), **extra)
                return True
            model = "ok"
        if model == "auth":
            error = {"message": "Incorrect API key provided: sk-proj-abcd1234efgh5678ijkl. You "
                     "can find your API key at https://platform.openai.com/account/api-keys.",
                     "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}  # fmt: skip
            await self.send(401, orjson.dumps({"error": error}))
            return True
        if model == "context":
            error = {"message": "This model's maximum context length is 8 tokens.",
                     "type": "invalid_request_error", "param": "messages",
                     "code": "context_length_exceeded"}  # fmt: skip
            await self.send(400, orjson.dumps({"error": error}))
            return True
        if model == "reset-body":
            body = _completion(model, ANSWER)
            self.writer.write(
                self.head(200, {"content-type": "application/json",
                                "content-length": str(len(body))}) + body[: len(body) // 2]
            )  # fmt: skip
            await self.writer.drain()
            self.reset()
            return False
        if model == "late-headers":
            await self.hold()
            return False
        if model == "trickle":
            body = _completion(model, ANSWER)
            self.writer.write(
                self.head(200, {"content-type": "application/json",
                                "content-length": str(len(body))})
            )  # fmt: skip
            for i in range(len(body)):
                self.writer.write(body[i : i + 1])
                await self.writer.drain()
                await asyncio.sleep(0.2)
            return True
        if model == "bad-json":
            await self.send(200, b'{"id": "chatcmpl-fault", "choices": [{"index": 0, "mess')
            return True
        if model == "html-200":
            page = b"<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
            await self.send(200, page, "text/html")
            return True
        if model == "oversized":
            await self.send(200, _completion(model, "x" * 2_000_000))
            return True
        if not stream:
            if model == "empty-choices":
                body = orjson.dumps({"id": "chatcmpl-fault", "object": "chat.completion",
                                     "created": 1, "model": model, "choices": []})  # fmt: skip
                await self.send(200, body)
                return True
            if model == "bad-usage":
                usage = {"prompt_tokens": "ten", "completion_tokens": "two", "total_tokens": "x"}
                await self.send(200, _completion(model, ANSWER, usage))
                return True
            await self.send(200, _completion(model, answer_for(request)))
            return True
        return await self.stream(model, request)

    async def stream(self, model: str, request: dict[str, Any]) -> bool:
        close_delimited = model == "cut-after-first"
        headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
        if close_delimited:
            headers["connection"] = "close"
        else:
            headers["transfer-encoding"] = "chunked"
        self.writer.write(self.head(200, headers))

        async def event(data: bytes) -> None:
            self.writer.write(data if close_delimited else b"%x\r\n%s\r\n" % (len(data), data))
            await self.writer.drain()

        text = answer_for(request)
        words = re.findall(r"\s*\S+", text) or [""]  # a token a chunk, with its leading space
        continuing = text != ANSWER
        self.stats.open += 1
        try:
            if model == "bad-sse":
                await event(b'data: {"id": "chatcmpl-fault", "choices": [{oops\n\n')
                await event(b"")
                return True
            if model == "empty-choices":
                for _ in range(2):
                    await event(b"data: " + orjson.dumps({"id": "x", "object":
                                "chat.completion.chunk", "created": 1, "model": model,
                                "choices": []}) + b"\n\n")  # fmt: skip
                await event(b"data: [DONE]\n\n")
                await event(b"")
                return True
            if model == "tool-cut":
                call = {"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "wea'}}  # fmt: skip
                await event(_chunk(model, {"role": "assistant", "tool_calls": [call]}))
                await asyncio.sleep(0.2)  # the chunk reaches the client before the reset
                self.reset()
                return False
            first: dict[str, Any] = {"content": words[0]}
            if not continuing:
                first["role"] = "assistant"
            await event(_chunk(model, first))
            if model == "cut-after-first":
                self.writer.close()
                return False
            if model == "stall-after-first":
                await self.hold()
                return False
            if model == "no-done":
                await event(_chunk(model, {"content": words[1]}))
                await event(b"")
                return True
            for w in words[1:]:
                await event(_chunk(model, {"content": w}))
            await event(_chunk(model, {}, "stop"))
            if (request.get("stream_options") or {}).get("include_usage"):
                usage: Any = {"prompt_tokens": 3, "completion_tokens": len(words),
                              "total_tokens": 3 + len(words)}  # fmt: skip
                if model == "bad-usage":
                    usage = {"prompt_tokens": "ten", "completion_tokens": [], "total_tokens": None}
                last = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 1,
                        "model": model, "choices": [], "usage": usage}  # fmt: skip
                await event(b"data: " + orjson.dumps(last) + b"\n\n")
            await event(b"data: [DONE]\n\n")
            await event(b"")
            return True
        finally:
            self.stats.open -= 1


class FaultUpstream:
    """Runs the fault server on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self) -> None:
        self.stats = FaultStats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultUpstream:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await _Conn(reader, writer, self.stats).serve()
            finally:
                self._tasks.discard(task)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(handle, sock=sock))
            ready.set()
            with contextlib.suppress(RuntimeError):
                loop.run_forever()
            server.close()
            for t in list(self._tasks):
                t.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fault-upstream")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)


@contextlib.contextmanager
def running_fault_upstream() -> Iterator[FaultUpstream]:
    upstream = FaultUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A 127.0.0.1 port whose accept queue is full: a connect to it hangs (SYNs dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the queue; later SYNs are dropped while it stays full
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.05)
    try:
        yield port
    finally:
        for c in fillers:
            c.close()
        server.close()


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on: connects are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port
