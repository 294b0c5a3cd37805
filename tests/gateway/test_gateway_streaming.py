"""Streaming through a real gateway server to a real upstream server, with the real openai SDK."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "the quick brown fox"}]


def test_openai_sdk_non_streaming_and_streaming(echo_upstream: EchoUpstream, db_url: str) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    with serving(app) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
        assert r.choices[0].message.content == "the quick brown fox"
        assert r.model == "echo"
        assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 4)

        # Without include_usage: no usage chunk reaches the client, though the gateway asked for one.
        chunks = list(client.chat.completions.create(model="echo", messages=USER, stream=True))  # type: ignore[arg-type]
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()
            == USER[0]["content"].split()
        )
        assert all(c.usage is None for c in chunks)
        assert echo_upstream.stats.bodies[-1]["stream_options"] == {"include_usage": True}

        # With include_usage: the last chunk carries usage and no choices, as OpenAI sends it.
        chunks = list(
            client.chat.completions.create(
                model="echo",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},  # type: ignore[arg-type]
            )
        )
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 4
        assert all(c.model == "echo" for c in chunks)
        assert chunks[-2].choices[0].finish_reason == "stop"

    # The server has shut down: every request was flushed to the store on exit.
    rows = Store(db_url).recent_requests()
    assert len(rows) == 3
    streamed = [r for r in rows if r["stream"]]
    assert len(streamed) == 2
    assert all(r["ttft_ms"] is not None and r["ttft_ms"] <= r["latency_ms"] for r in streamed)
    assert all(r["output_tokens"] == 4 for r in rows)


def test_sse_wire_format_is_exactly_openais(echo_upstream: EchoUpstream, db_url: str) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    with serving(app) as base_url, httpx.Client() as http:
        body = {"model": "echo", "messages": USER, "stream": True}
        with http.stream("POST", f"{base_url}/chat/completions", json=body) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == ""  # every event ends with a blank line
    assert events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])


def test_upstream_errors_before_the_first_chunk_keep_their_status(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    with serving(app) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="limited", messages=USER, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError, match="fails with 400"):
            client.chat.completions.create(model="refused", messages=USER, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="broken", messages=USER)  # type: ignore[arg-type]
        assert e.value.status_code == 502


def test_upstream_timeout_is_504_and_a_stalled_stream_ends(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url, timeout_s=0.5))
    with serving(app) as base_url, httpx.Client(timeout=10) as http:
        t = time.monotonic()
        r = http.post(f"{base_url}/chat/completions", json={"model": "slow", "messages": USER})
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "upstream_timeout"
        # A stream that stops mid-way ends with an in-band error, never a hang.
        body = {"model": "hang", "messages": USER, "stream": True}
        with http.stream("POST", f"{base_url}/chat/completions", json=body) as s:
            assert s.status_code == 200
            text = s.read().decode()
        assert '"upstream_timeout"' in text
        assert time.monotonic() - t < 8


def test_client_disconnect_cancels_the_upstream_stream(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    cancelled_before = echo_upstream.stats.cancelled_streams
    with serving(app) as base_url:
        with httpx.Client(timeout=10) as http:
            body = {"model": "hang", "messages": USER, "stream": True}
            with http.stream("POST", f"{base_url}/chat/completions", json=body) as s:
                first = next(s.iter_lines())
                assert first.startswith("data: ")
            # leaving the block closes the connection mid-stream
        deadline = time.monotonic() + 5
        while (
            echo_upstream.stats.cancelled_streams == cancelled_before
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert echo_upstream.stats.cancelled_streams == cancelled_before + 1
    rows = Store(db_url).recent_requests()
    assert rows[0]["status"] == 499 and rows[0]["error"] == "client disconnected"


def test_unreachable_upstream_is_502(db_url: str, tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    app = create_app(remote_config(f"http://127.0.0.1:{port}/v1", db_url))
    with serving(app) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
        assert e.value.status_code == 502
        assert "unreachable" in str(e.value)
