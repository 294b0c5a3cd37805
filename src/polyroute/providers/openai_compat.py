"""Any OpenAI-compatible upstream: OpenAI, vLLM, SGLang, Ollama, llama.cpp server, ...

One pooled transport per provider (aiohttp's pool under httpx's request and response types,
see :mod:`polyroute.providers.http_transport`). The request body is forwarded as it came
(with the upstream's model name); errors are mapped once onto polyroute's hierarchy.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import orjson

from polyroute import __version__
from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import (
    ConfigError,
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth, Provider
from polyroute.providers.http_transport import AiohttpTransport
from polyroute.providers.tool_stream import ToolCallStream


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
        try:
            response = await self._send(self._post_chat(body))
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"upstream {self.name} returned a body that is not JSON "
                f"(status {response.status_code})"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamError(f"upstream {self.name} returned JSON that is not an object")
        return data

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        try:
            response = await self._send(self._post_chat(body))
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        # A stream in OpenAI's form passes unchanged; one that repeats tool-call ids and
        # names in every chunk (some servers do) is put in it.
        tool_calls = ToolCallStream()
        try:
            if response.status_code >= 400:
                raise self._status_error(response.status_code, await response.aread())
            async for line in sse_lines(response.aiter_bytes()):
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments (": keep-alive"), event names
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamError(
                        f"upstream {self.name} sent a stream event that is not JSON"
                    ) from None
                if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                    raise UpstreamError(f"upstream {self.name} failed mid-stream: {chunk['error']}")
                yield tool_calls.fix(chunk) if isinstance(chunk, dict) else chunk
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
        return UpstreamError(f"{where} failed: {e.__class__.__name__}: {e}")

    def _status_error(self, status: int, content: bytes) -> UpstreamError:
        message = _error_message(content) or f"status {status}"
        text = f"upstream {self.name} answered {status}: {message}"
        if status == 429:
            return RateLimited(text)
        if status == 408:
            return UpstreamTimeout(text)
        if 400 <= status < 500:
            return UpstreamRejected(text, status_code=status)
        return UpstreamError(text)


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
