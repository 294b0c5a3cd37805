"""The aiohttp-backed httpx transport, against real sockets on 127.0.0.1, and SSE line splitting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from tests.support.echo_upstream import EchoUpstream

from polyroute.providers.http_transport import AiohttpTransport
from polyroute.providers.openai_compat import sse_lines


def _post(url: str, model: str, *, stream: bool = False, read_s: float = 10.0) -> httpx.Request:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
    }
    if stream:
        body["stream"] = True
    return httpx.Request(
        "POST",
        url,
        headers={"content-type": "application/json"},
        content=orjson.dumps(body),
        extensions={"timeout": httpx.Timeout(read_s, connect=2.0).as_dict()},
    )


async def test_answers_and_streams_over_one_kept_alive_pool(echo_upstream: EchoUpstream) -> None:
    transport = AiohttpTransport(max_connections=4)
    url = f"{echo_upstream.base_url}/chat/completions"
    try:
        for _ in range(3):
            r = await transport.handle_async_request(_post(url, "echo"))
            await r.aread()
            assert r.status_code == 200
            assert r.json()["choices"][0]["message"]["content"] == "hello there"
        r = await transport.handle_async_request(_post(url, "echo", stream=True))
        text = (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert text.rstrip().endswith("data: [DONE]")
        # A stream dropped half-read frees its slot: more requests than the pool still pass.
        for _ in range(6):
            r = await transport.handle_async_request(_post(url, "stream-then-hang", stream=True))
            async for _chunk in r.aiter_raw():
                break
            await r.aclose()
        r = await transport.handle_async_request(_post(url, "echo"))
        await r.aread()
        assert r.status_code == 200
    finally:
        await transport.aclose()


async def test_refused_connection_is_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    transport = AiohttpTransport(max_connections=2)
    try:
        with pytest.raises(httpx.ConnectError):
            await transport.handle_async_request(_post(f"http://127.0.0.1:{port}/v1/x", "echo"))
    finally:
        await transport.aclose()


async def test_slow_answer_is_read_timeout(echo_upstream: EchoUpstream) -> None:
    transport = AiohttpTransport(max_connections=2)
    url = f"{echo_upstream.base_url}/chat/completions"
    try:
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(_post(url, "slow-5", read_s=0.2))
        # Mid-stream too: the first chunk comes, then nothing.
        r = await transport.handle_async_request(
            _post(url, "stream-then-hang", stream=True, read_s=0.3)
        )
        with pytest.raises(httpx.ReadTimeout):
            await r.aread()
    finally:
        await transport.aclose()


async def test_server_closing_without_an_answer_is_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = AiohttpTransport(max_connections=2)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(_post(f"http://127.0.0.1:{port}/v1/x", "echo"))
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


def test_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    transport = AiohttpTransport(max_connections=2)
    assert transport._proxy(httpx.URL("https://api.example.com/v1")) == (
        "http://proxy.internal:3128"
    )
    assert transport._proxy(httpx.URL("https://127.0.0.1:8443/v1")) is None
    assert transport._proxy(httpx.URL("http://api.example.com/v1")) is None  # no HTTP_PROXY


async def _chunks(data: bytes, cut: int) -> AsyncIterator[bytes]:
    yield data[:cut]
    yield data[cut:]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
async def test_sse_lines_split_anywhere_give_the_same_lines(end: bytes) -> None:
    lines = [b": keep-alive", b'data: {"a": 1}', b"", b"data: [DONE]", b""]
    data = end.join(lines)
    for cut in range(len(data) + 1):
        got = [line async for line in sse_lines(_chunks(data, cut))]
        assert got == lines[:-1], cut
