"""Any OpenAI-compatible upstream: OpenAI, vLLM, SGLang, Ollama, llama.cpp server, ...

One pooled transport per provider (aiohttp's pool under httpx's request and response types,
see :mod:`polyroute.providers.http_transport`). The request body is forwarded as it came
(with the upstream's model name); errors are mapped once onto polyroute's hierarchy.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import orjson

from polyroute import __version__
from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import (
    ConfigError,
    ContextWindowExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamIncomplete,
    UpstreamOverloaded,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth, Provider
from polyroute.providers.http_transport import AiohttpTransport
from polyroute.providers.profiles import ModelProfile, profile_of
from polyroute.providers.tool_stream import ToolCallStream
from polyroute.providers.trace_headers import UPSTREAM_TRACE_HEADERS


class OpenAICompatProvider(Provider):
    """Talks the OpenAI chat-completions API over pooled HTTP connections."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        models: list[ModelConfig],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, models, transport=transport)
        if not config.base_url:
            raise ConfigError(
                f"providers.{name}.base_url is required for kind 'openai' "
                f"(e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1)"
            )
        headers = {
            "accept": "application/json",
            "accept-encoding": "gzip, deflate",
            "user-agent": f"polyroute/{__version__}",
            "content-type": "application/json",
            **config.headers,
        }
        key = config.api_key()
        self._key = key
        if key:
            headers["authorization"] = f"Bearer {key}"
        # Requests go straight to the transport, without an httpx.AsyncClient: its URL
        # merging, cookie jar and hooks cost more CPU than the proxying itself, and a
        # gateway needs none of them. URLs, headers and timeouts are built once, here.
        self._transport = transport or AiohttpTransport(max_connections=config.max_connections)
        base = config.base_url.rstrip("/")
        self._chat_url = httpx.URL(f"{base}/chat/completions")
        self._models_url = httpx.URL(f"{base}/models")
        self._headers = httpx.Headers(headers)
        # What httpx would add to each chat request but its length: Host, first (as httpx puts it).
        auto = [] if "host" in self._headers else [(b"Host", self._chat_url.netloc)]
        self._chat_headers = httpx.Headers([*auto, *self._headers.raw])
        self._timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s).as_dict()
        self._health_timeout = httpx.Timeout(2.0).as_dict()
        #: The models whose family needs its requests adapted (OpenAI's reasoning models).
        self._adapt: dict[str, ModelProfile] = {}
        for m in models:
            profile = profile_of(m.target, m.catalog_id)
            if profile.adapts:
                self._adapt[m.name] = profile

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """The transport's answer, its body not read yet (the caller closes it)."""
        return await self._transport.handle_async_request(request)

    def _post_chat(self, body: JSON) -> httpx.Request:
        # The same request as httpx.Request(..., content=...) makes, at a third of its CPU:
        # given a stream and complete headers, httpx skips its header defaulting.
        content = orjson.dumps(body)
        headers = httpx.Headers(self._chat_headers)
        headers["Content-Length"] = str(len(content))
        for name, value in UPSTREAM_TRACE_HEADERS.get():
            headers[name] = value
        request = httpx.Request(
            "POST",
            self._chat_url,
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions={"timeout": self._timeout},
        )
        request.read()  # the body is in memory already: this only makes .content available
        return request

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        if self._adapt and model.name in self._adapt:
            body = self._adapt[model.name].adapt(body)
        total = model.timeout_s or self.config.timeout_s
        try:
            # One deadline for the whole call: per-read timeouts alone let an upstream that
            # trickles a byte at a time hold the request for ever.
            async with asyncio.timeout(total):
                response = await self._send(self._post_chat(body))
                try:
                    content = await _read_bounded(response, model.max_response_bytes)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise UpstreamTimeout(
                f"upstream {self.name} did not answer within {total:g}s (models.timeout_s)"
            ) from None
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        if content is None:
            raise UpstreamIncomplete(
                f"upstream {self.name} sent an answer over {model.max_response_bytes} bytes "
                f"(models.max_response_bytes)"
            )
        if response.status_code >= 400:
            raise self._status_error(response.status_code, content, response.headers)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamIncomplete(
                f"upstream {self.name} returned a body that is not JSON "
                f"(status {response.status_code})"
            ) from None
        problem = completion_problem(data)
        if problem is not None:
            raise UpstreamIncomplete(f"upstream {self.name} returned {problem}")
        assert isinstance(data, dict)
        return data

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        if self._adapt and model.name in self._adapt:
            body = self._adapt[model.name].adapt(body)
        first_timeout = model.first_token_timeout_s or self.config.timeout_s
        stall_timeout = model.stall_timeout_s or self.config.timeout_s
        try:
            async with asyncio.timeout(first_timeout):
                response = await self._send(self._post_chat(body))
        except TimeoutError:
            raise UpstreamTimeout(
                f"upstream {self.name} sent no first token within {first_timeout:g}s "
                f"(models.first_token_timeout_s)"
            ) from None
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        # A stream in OpenAI's form passes unchanged; one that repeats tool-call ids and
        # names in every chunk (some servers do) is put in it.
        tool_calls = ToolCallStream()
        try:
            if response.status_code >= 400:
                content = await _read_bounded(response, 64 * 1024)
                raise self._status_error(response.status_code, content or b"", response.headers)
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise UpstreamIncomplete(
                    f"upstream {self.name} answered a stream with {kind or 'no content type'}, "
                    f"not an event stream"
                )
            check = StreamCheck(self.name, model.max_response_bytes)
            deadline = asyncio.get_running_loop().time() + first_timeout
            reads = check.read(response.aiter_bytes(), deadline, stall_timeout)
            async for line in sse_lines(reads):
                chunk = check.event(line)
                if chunk is _DONE:
                    return
                if chunk is not None:
                    yield tool_calls.fix(chunk) if isinstance(chunk, dict) else chunk
            check.ended()
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        finally:
            await response.aclose()

    async def health(self, model: ModelConfig) -> ModelHealth:
        request = httpx.Request(
            "GET",
            self._models_url,
            headers=self._headers,
            extensions={"timeout": self._health_timeout},
        )
        try:
            response = await self._send(request)
            try:
                await response.aread()  # read to the end, so the connection is kept
            finally:
                await response.aclose()
        except httpx.HTTPError as e:
            return ModelHealth(False, str(self._transport_error(e)))
        if response.status_code == 401 or response.status_code == 403:
            return ModelHealth(
                False, f"upstream {self.name} refused the API key ({response.status_code})"
            )
        if response.status_code >= 500:
            return ModelHealth(False, f"upstream {self.name} answered {response.status_code}")
        return ModelHealth(True)

    def _transport_error(self, e: httpx.HTTPError) -> UpstreamError:
        where = f"upstream {self.name} ({self.config.base_url})"
        if isinstance(e, httpx.TimeoutException):
            if isinstance(e, httpx.ConnectTimeout):
                return UpstreamUnreachable(f"{where} did not accept a connection in time")
            return UpstreamTimeout(f"{where} did not answer within {self.config.timeout_s:g}s")
        if isinstance(e, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError):
            return UpstreamUnreachable(f"{where} is unreachable: {e.__class__.__name__}: {e}")
        if isinstance(e, httpx.DecodingError):
            return UpstreamIncomplete(f"{where} sent a body that does not decode: {e}")
        return UpstreamError(f"{where} failed: {e.__class__.__name__}: {e}")

    def _status_error(
        self, status: int, content: bytes, headers: httpx.Headers | None = None
    ) -> UpstreamError:
        message = _error_message(content) or f"status {status}"
        text = f"upstream {self.name} answered {status}: {message}"
        error: UpstreamError
        if status in (401, 403):
            # That provider's key is at fault, not the client: its text can quote the key.
            error = UpstreamAuthFailed(
                f"upstream {self.name} refused polyroute's credentials ({status}): "
                f"{redact_secrets(message, self._key)}"
            )
        elif status == 429:
            error = RateLimited(text)
        elif status == 503:
            error = UpstreamOverloaded(text)
        elif status == 408:
            error = UpstreamTimeout(text)
        elif status in (400, 413, 422) and is_context_overflow(content, message):
            error = ContextWindowExceeded(text)
        elif 400 <= status < 500:
            error = UpstreamRejected(text, status_code=status)
        else:
            error = UpstreamError(text)
        if headers is not None:
            error.retry_after_s = parse_retry_after(headers.get("retry-after"))
        return error


_DONE: Any = object()
_CONTEXT_WORDS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "context length",
    "too many tokens",
    "prompt is too long",
    "input is too long",
)
_SECRET = re.compile(
    r"(?:sk|pk|rk|key|api|org|proj)[-_][A-Za-z0-9_\-*.]{4,}|[A-Za-z0-9_\-]{24,}|\*{3,}\w*"
)


def redact_secrets(text: str, key: str | None = None) -> str:
    """``text`` without anything that looks like a credential (or is ``key``)."""
    if key:
        text = text.replace(key, "[redacted]")
    return _SECRET.sub("[redacted]", text)


def is_context_overflow(content: bytes, message: str) -> bool:
    """Whether an upstream's 4xx says the prompt does not fit the model's context."""
    low = (message + " " + content[:2000].decode("utf-8", "replace")).lower()
    return any(w in low for w in _CONTEXT_WORDS)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def completion_problem(data: Any) -> str | None:
    """What makes a non-streaming answer unusable (None when it is a whole answer)."""
    if not isinstance(data, dict):
        return "JSON that is not an object"
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return "an answer with no choices"
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            return "a choice without a message"
    return usage_problem(data.get("usage"))


_USAGE_INTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def usage_problem(usage: Any) -> str | None:
    if usage is None:
        return None
    if not isinstance(usage, dict):
        return "usage that is not an object"
    for name in _USAGE_INTS:
        value = usage.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53
        ):
            return f"usage.{name} that is not a token count ({str(value)[:40]!r})"
    return None


class StreamCheck:
    """What a stream has sent so far, to tell a whole answer from a cut one.

    A stream is whole when every choice it started ended with a ``finish_reason``: an
    upstream that closes the connection early (or drops ``[DONE]``) must not look like
    one that finished, and a body that is not SSE at all yields no event.
    """

    __slots__ = ("finished", "limit", "name", "size", "started")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.size = 0
        self.started: set[int] = set()
        self.finished: set[int] = set()

    async def read(
        self, chunks: AsyncIterator[bytes], first_deadline: float, stall_s: float
    ) -> AsyncIterator[bytes]:
        """``chunks`` as they arrive, each network read under its deadline: until the first
        choice, the first-token deadline (``first_deadline``, loop time); then ``stall_s``.

        Only the read is timed, never the time the caller spends between two chunks (a slow
        client is not a stalled upstream); one timer per read, not per event.
        """
        it = aiter(chunks)
        while True:
            first = not self.started
            try:
                if first:
                    async with asyncio.timeout_at(first_deadline):
                        chunk = await anext(it, None)
                else:
                    async with asyncio.timeout(stall_s):
                        chunk = await anext(it, None)
            except TimeoutError:
                what = "no first token" if first else f"nothing for {stall_s:g}s (stalled)"
                raise UpstreamTimeout(f"upstream {self.name} sent {what}") from None
            if chunk is None:
                return
            self.size += len(chunk)
            if self.size > self.limit:
                raise UpstreamIncomplete(
                    f"upstream {self.name} sent a stream over {self.limit} bytes "
                    f"(models.max_response_bytes)"
                )
            yield chunk

    def event(self, line: bytes) -> Any:
        """The chunk a line carries; None for lines that carry none; ``_DONE`` at the end."""
        if not line.startswith(b"data:"):
            return None  # blank separators, comments (": keep-alive"), event names
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.ended()
            return _DONE
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamIncomplete(
                f"upstream {self.name} sent a stream event that is not JSON"
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamIncomplete(
                f"upstream {self.name} sent a stream event that is not an object"
            )
        if "error" in chunk and "choices" not in chunk:
            raise UpstreamError(f"upstream {self.name} failed mid-stream: {chunk['error']}")
        choices = chunk.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise UpstreamIncomplete(f"upstream {self.name} sent choices that are not a list")
        for choice in choices or ():
            if not isinstance(choice, dict):
                raise UpstreamIncomplete(
                    f"upstream {self.name} sent a choice that is not an object"
                )
            index = choice.get("index", 0)
            self.started.add(index)
            if choice.get("finish_reason"):
                self.finished.add(index)
        problem = usage_problem(chunk.get("usage"))
        if problem is not None:
            if not (self.started and self.started <= self.finished):
                raise UpstreamIncomplete(f"upstream {self.name} sent {problem}")
            # The answer is whole already (and the client has it): only its count is lost.
            chunk["usage"] = None
        return chunk

    def ended(self) -> None:
        """The stream is over: raise if it is not whole."""
        if not self.started:
            raise UpstreamIncomplete(f"upstream {self.name} ended the stream with no answer")
        if not self.started <= self.finished:
            raise UpstreamIncomplete(
                f"upstream {self.name} ended the stream before the answer finished "
                f"(no finish_reason)"
            )


async def _read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes (the rest is not read)."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
    return b"".join(parts)


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a server-sent event stream, without their ends (LF, CRLF or CR).

    Works on bytes, as SSE is UTF-8 and orjson reads bytes: decoding to text first, as
    ``httpx.Response.aiter_lines`` does, costs more than the rest of relaying a chunk.
    """
    pending = b""
    async for chunk in chunks:
        lines = (pending + chunk if pending else chunk).splitlines(keepends=True)
        # A last line with no LF may be cut short (or be a CR whose LF is still coming).
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            yield line.rstrip(b"\r\n")
    if pending:
        yield pending.rstrip(b"\r\n")


def _error_message(content: bytes) -> str | None:
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = content.decode("utf-8", "replace").strip()
        return text[:300] or None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return None


PROVIDERS.add(OpenAICompatProvider.kind, OpenAICompatProvider)
