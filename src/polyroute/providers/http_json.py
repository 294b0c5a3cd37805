"""JSON over the pooled transport, for the native (non-OpenAI) HTTP providers.

Anthropic and Gemini differ from OpenAI in URLs, headers and bodies, not in how a request is
sent or how a failure reads: both go through :class:`JsonHttp`, which posts a JSON body over
:class:`~polyroute.providers.http_transport.AiohttpTransport` (or a test's transport) and
maps transport failures and error statuses onto polyroute's error tree once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from polyroute import __version__
from polyroute.config import ProviderConfig
from polyroute.errors import (
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from polyroute.providers.base import JSON
from polyroute.providers.http_transport import AiohttpTransport
from polyroute.providers.openai_compat import sse_lines
from polyroute.providers.trace_headers import UPSTREAM_TRACE_HEADERS


class JsonHttp:
    """One provider's pooled connection to its upstream, and its error mapping."""

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        headers: Mapping[str, str],
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.name = name
        self.config = config
        self.transport = transport or AiohttpTransport(max_connections=config.max_connections)
        self.headers = httpx.Headers(
            {
                "accept": "application/json",
                "accept-encoding": "gzip, deflate",
                "user-agent": f"polyroute/{__version__}",
                "content-type": "application/json",
                **headers,
                **config.headers,  # the config's own headers win (e.g. another API version)
            }
        )
        self._timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s).as_dict()
        self.health_timeout = httpx.Timeout(2.0).as_dict()

    async def aclose(self) -> None:
        await self.transport.aclose()

    def request(self, method: str, url: str, body: JSON | None = None) -> httpx.Request:
        content = orjson.dumps(body) if body is not None else b""
        trace = UPSTREAM_TRACE_HEADERS.get() if body is not None else ()
        request = httpx.Request(
            method,
            url,
            headers=self.headers if not trace else [*self.headers.multi_items(), *trace],
            content=content or None,
            extensions={"timeout": self._timeout if body is not None else self.health_timeout},
        )
        request.read()
        return request

    async def send(self, request: httpx.Request) -> httpx.Response:
        """The upstream's answer, body unread (the caller closes it); errors mapped."""
        try:
            return await self.transport.handle_async_request(request)
        except httpx.HTTPError as e:
            raise self.transport_error(e) from e

    async def post_json(self, url: str, body: JSON) -> JSON:
        """POST ``body`` and return the JSON object answered; error statuses raise."""
        response = await self.send(self.request("POST", url, body))
        try:
            await response.aread()
        except httpx.HTTPError as e:
            raise self.transport_error(e) from e
        finally:
            await response.aclose()
        if response.status_code >= 400:
            raise self.status_error(response.status_code, response.content)
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

    async def events(self, response: httpx.Response) -> AsyncIterator[tuple[str, JSON]]:
        """The (event name, JSON data) pairs of a server-sent event stream.

        An event without an ``event:`` line is named ``message``, as in the SSE spec.
        """
        event, data = "message", b""
        try:
            async for line in sse_lines(response.aiter_bytes()):
                if not line:
                    if data:
                        yield event, self._event_json(data)
                    event, data = "message", b""
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode("utf-8", "replace")
                elif line.startswith(b"data:"):
                    data = data + b"\n" + line[5:].strip() if data else line[5:].strip()
            if data:
                yield event, self._event_json(data)
        except httpx.HTTPError as e:
            raise self.transport_error(e) from e

    def _event_json(self, data: bytes) -> JSON:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"upstream {self.name} sent a stream event that is not JSON"
            ) from None
        if not isinstance(value, dict):
            raise UpstreamError(f"upstream {self.name} sent a stream event that is not an object")
        return value

    def transport_error(self, e: httpx.HTTPError) -> UpstreamError:
        where = f"upstream {self.name} ({self.config.base_url})"
        if isinstance(e, httpx.TimeoutException):
            if isinstance(e, httpx.ConnectTimeout):
                return UpstreamUnreachable(f"{where} did not accept a connection in time")
            return UpstreamTimeout(f"{where} did not answer within {self.config.timeout_s:g}s")
        if isinstance(e, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError):
            return UpstreamUnreachable(f"{where} is unreachable: {e.__class__.__name__}: {e}")
        return UpstreamError(f"{where} failed: {e.__class__.__name__}: {e}")

    def status_error(self, status: int, content: bytes) -> UpstreamError:
        """An error status as polyroute's error; 5xx (Anthropic's 529 overloaded too) retry."""
        text = f"upstream {self.name} answered {status}: {error_message(content) or 'no detail'}"
        if status == 429:
            return RateLimited(text)
        if status == 408:
            return UpstreamTimeout(text)
        if 400 <= status < 500:
            return UpstreamRejected(text, status_code=status)
        return UpstreamError(text)


def error_message(content: bytes) -> str | None:
    """The message in an error body: ``{"error": {"message": ...}}`` (Anthropic, Gemini and
    OpenAI all nest it so), a bare ``{"error": "..."}``, or the start of a non-JSON body."""
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace").strip()[:300] or None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini's streaming endpoint wraps its error in a list
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            kind = err.get("type") or err.get("status")
            return f"{kind}: {err['message']}" if isinstance(kind, str) else str(err["message"])
        if isinstance(err, str):
            return err
    return None
