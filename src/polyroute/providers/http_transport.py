"""The network under the HTTP providers: an ``httpx`` transport over an ``aiohttp`` pool.

Providers speak ``httpx.Request``/``httpx.Response``, so tests can swap the network for
``httpx.MockTransport``. Underneath, the real network is aiohttp's connection pool: httpx's
own pool (httpcore) polls every kept-alive connection on each request, which at 64 requests in
flight cost the gateway about 2.5 ms of CPU per request, aiohttp's pool a tenth of that.

aiohttp's errors are raised as the httpx errors they correspond to (refused → ConnectError,
read timeout → ReadTimeout, ...), so callers map failures the same way whatever the transport.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx

#: Most specific first: aiohttp's timeouts are also connection errors, and its connector
#: errors are OS errors. Anything else from aiohttp becomes a plain TransportError.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # e.g. a malformed answer
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),  # e.g. connection reset mid-answer
    (aiohttp.ClientError, httpx.TransportError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as e:
        for source, target in _ERRORS:
            if isinstance(e, source):
                raise target(str(e) or type(e).__name__) from e
        raise  # unreachable: ClientError is the last entry


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body read as it arrives; closing it early drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # release() hands a fully read connection back to the pool and closes a half-read
        # one, so an abandoned stream also stops the upstream's work.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests over one pooled ``aiohttp.ClientSession`` (HTTP/1.1).

    The session is opened on first use, inside the event loop that serves requests.
    Proxies come from the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), as with
    httpx, read when the transport is made.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float | None = 5.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}
        # Not aiohttp's trust_env: that re-reads the environment and ~/.netrc in a worker
        # thread on every request, which at load costs more than the request itself.
        self._env_proxies = urllib.request.getproxies_environment()
        self._proxies: dict[tuple[str, str, int | None], str | None] = {}

    def _open(self) -> aiohttp.ClientSession:
        # httpx's context: certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR when set.
        context: ssl.SSLContext = httpx.create_ssl_context()
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=self._keepalive_expiry,
            ssl=context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx decodes gzip & co. from the headers
            cookie_jar=aiohttp.DummyCookieJar(),  # an API proxy keeps no cookies
            trust_env=False,  # proxies: see _proxy
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        t = request.extensions.get("timeout") or {}
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            # connect: waiting for a pooled connection, and opening one; sock_read: the
            # longest silence between two reads, httpx's read timeout.
            connect, read, pool = key
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=None if pool is None or connect is None else pool + connect,
                sock_connect=connect,
                sock_read=read,
            )
            self._timeouts[key] = timeout
        return timeout

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy for this URL's scheme and host, from the environment; None: go direct."""
        key = (url.scheme, url.host, url.port)
        if key not in self._proxies:
            proxy = self._env_proxies.get(url.scheme) or self._env_proxies.get("all")
            where = f"{url.host}:{url.port}" if url.port else url.host
            # proxy_bypass_environment applies NO_PROXY; CPython has it, typeshed does not.
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if proxy and bypass(where, self._env_proxies):
                proxy = None
            self._proxies[key] = proxy or None
        return self._proxies[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None or self._session.closed:
            self._session = self._open()
        body = request.content  # providers send bytes; the request is already read
        with _httpx_errors():
            response = await self._session.request(
                request.method,
                str(request.url),
                # From the raw bytes: httpx's own decoding guesses an encoding each time.
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request),
                proxy=self._proxy(request.url),
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
