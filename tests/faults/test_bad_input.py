"""Hand-made bad input against a real server: each gets a clear 4xx, never a 5xx, and the
server keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "hi"}]
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(echo_upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('badinput') / 'polyroute.db'}"
    cfg = remote_config(echo_upstream.base_url, db_url).model_copy(
        update={
            "server": remote_config("", db_url).server.model_copy(
                update={"max_body_bytes": MAX_BODY, "body_timeout_s": 1.0}
            )
        }
    )
    with serving(create_app(cfg)) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for the module: each top-level httpx call builds a TLS context (~0.2 s of
    # CPU on a busy machine) even for plain http.
    with httpx.Client(timeout=10) as client:
        yield client


def nested(depth: int) -> bytes:
    """A JSON array nested ``depth`` deep (as text: encoders refuse to write it)."""
    return b"[" * depth + b'"x"' + b"]" * depth


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "echo", "messages": USER, **fields})


CASES: list[tuple[str, bytes, int]] = [
    ("invalid json", b'{"model": "echo", "messages": [', 400),
    ("an array", b"[1, 2, 3]", 400),
    ("a string", b'"hello"', 400),
    ("null", b"null", 400),
    ("empty", b"", 400),
    ("model not a string", _body(model=7), 400),
    ("messages not a list", _body(messages="hi"), 400),
    ("message not an object", _body(messages=["hi"]), 400),
    ("content a number", _body(messages=[{"role": "user", "content": 5}]), 400),
    ("stream a string", _body(stream="true"), 400),
    ("temperature a string", _body(temperature="0.5"), 400),
    ("top_p too big", _body(top_p=3), 400),
    ("n = 1000", _body(n=1000), 400),
    ("max_tokens negative", _body(max_tokens=-5), 400),
    ("max_tokens a float", _body(max_tokens=1.5), 400),
    ("tools not a list", _body(tools={"a": 1}), 400),
    ("stream_options wrong", _body(stream=True, stream_options={"include_usage": "yes"}), 400),
    ("null bytes in model", _body(model="ec\u0000ho"), 404),
    ("300-character model", _body(model="m" * 300), 404),
    ("deep nesting in an extra field", _body()[:-1] + b', "extra": ' + nested(300) + b"}", 400),
    (
        "deep nesting in a text part",
        b'{"model": "echo", "messages": [{"role": "user", "content": [{"type": "text", '
        b'"text": ' + nested(1000) + b"}]}]}",
        400,
    ),
    ("nesting past the JSON parser's limit", b'{"model": "echo", "x": ' + nested(5000) + b"}", 400),
    ("over the body limit", _body(pad="x" * (MAX_BODY + 1)), 413),
]


@pytest.mark.parametrize(("content", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_bodies_get_clear_errors(
    server: str, http: httpx.Client, content: bytes, status: int
) -> None:
    r = http.post(
        f"{server}/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and "Traceback" not in error["message"]
    ok = http.post(f"{server}/chat/completions", json={"model": "echo", "messages": USER})
    assert ok.status_code == 200  # still serving


def test_huge_max_tokens_is_passed_on_not_a_crash(server: str, http: httpx.Client) -> None:
    r = http.post(f"{server}/chat/completions", content=_body(max_tokens=10**15),
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200


@pytest.mark.parametrize("kind", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_posts_without_json_content_type_get_415(
    server: str, http: httpx.Client, kind: str | None
) -> None:
    headers = {"content-type": kind} if kind else {}
    for path in ("/chat/completions", "/feedback"):
        r = http.post(f"{server}{path}", content=_body(), headers=headers)
        assert r.status_code == 415, r.text
        assert r.json()["error"]["code"] == "unsupported_media_type"
    ok = http.post(f"{server}/chat/completions", content=_body(),
                    headers={"content-type": "application/json; charset=utf-8"})  # fmt: skip
    assert ok.status_code == 200


def _raw(server: str, request: bytes, timeout: float = 5.0) -> bytes:
    url = httpx.URL(server)
    with socket.create_connection((url.host, url.port or 80), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                break
            data += part
        return data


def test_chunked_body_over_the_limit_is_413(server: str) -> None:
    piece = b"x" * 16384
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
    answer = _raw(server, head + chunk * (MAX_BODY // len(piece) + 2) + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")


def test_a_body_that_never_arrives_is_408_not_a_hang(server: str) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{\"model\": ")  # fmt: skip
    answer = _raw(server, head, timeout=5.0)  # body_timeout_s is 1 s here
    assert answer.startswith(b"HTTP/1.1 408")
