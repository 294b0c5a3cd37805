"""RPM and TPM shared by replicas through Redis (``auth.rate_limits: redis``).

The replicas here are two gateway apps with a SQLite store each: Redis is all they share.
Redis is Debian's ``redis-server``, started by ``tests/support/redis.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pydantic
import pytest
import redis
from tests.auth.support import ADMIN, auth_config, create_key, eventually
from tests.conftest import serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.config import AuthConfig
from polyroute.gateway import create_app
from polyroute.gateway.windows import RedisWindows

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi there"}]


def _fresh_minute(margin_s: float) -> None:
    """The shared window is the calendar minute: start in a fresh one if this one ends soon."""
    if time.time() % 60 > 60 - margin_s:
        time.sleep(60.5 - time.time() % 60)


@contextlib.contextmanager
def _two_replicas(
    echo_upstream: EchoUpstream, redis_url: str, tmp_path: Path, **limits: int
) -> Iterator[tuple[dict[str, str], list[openai.OpenAI]]]:
    """Two gateways, each with its own SQLite store, sharing only Redis; one key with
    ``limits`` (made in one store, copied into the other: its id names its Redis counters),
    and an openai client on each gateway."""
    urls = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}"
    apps = [
        create_app(auth_config(echo_upstream.base_url, u, rate_limits="redis", redis_url=redis_url))
        for u in urls
    ]
    with serving(apps[0]) as one, serving(apps[1]) as two:
        key = create_key(one.removesuffix("/v1"), **limits)
        _copy_key(urls[0], urls[1], key["id"])
        yield (
            key,
            [openai.OpenAI(base_url=u, api_key=key["secret"], max_retries=0) for u in (one, two)],
        )


def test_rpm_is_shared_by_replicas_through_redis(
    echo_upstream: EchoUpstream, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    with _two_replicas(echo_upstream, redis_url, tmp_path, rpm=6) as (_, clients):
        _fresh_minute(6)
        answered = refused = 0
        for i in range(10):
            try:
                clients[i % 2].chat.completions.create(model="echo", messages=USER)
                answered += 1
            except openai.RateLimitError as e:
                assert e.response.headers["retry-after"]
                assert "shared by every replica" in e.response.json()["error"]["message"]
                refused += 1
    assert (answered, refused) == (6, 4)


def test_tpm_is_shared_by_replicas_through_redis(
    echo_upstream: EchoUpstream, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    # "hi there" uses 3 prompt + 2 answer tokens: two requests use the minute's 10.
    with _two_replicas(echo_upstream, redis_url, tmp_path, tpm=10) as (key, clients):
        _fresh_minute(10)
        r = redis.Redis.from_url(redis_url)
        for n, c in enumerate(clients, 1):
            c.chat.completions.create(model="echo", messages=USER)
            eventually(lambda n=n: _redis_tokens(r, f"key:{key['id']}", 5 * n))
        r.close()
        with pytest.raises(openai.RateLimitError) as refused:
            clients[0].chat.completions.create(model="echo", messages=USER)
    headers = refused.value.response.headers
    assert (
        "tokens per minute (shared by every replica)"
        in refused.value.response.json()["error"]["message"]
    )  # app one alone saw 5
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == (
        "10",
        "0",
    )


def _redis_tokens(r: redis.Redis, subject: str, tokens: int) -> None:
    minute = int(time.time() // 60)
    found = r.hget(f"polyroute:rate:{subject}:{minute}", "tokens")
    assert found is not None and int(found) == tokens


def _copy_key(source: str, target: str, key_id: str) -> None:
    import sqlalchemy as sa

    from polyroute.store import schema

    src, dst = sa.create_engine(source), sa.create_engine(target)
    with src.connect() as conn:
        row = conn.execute(sa.select(schema.api_keys).where(schema.api_keys.c.id == key_id)).one()
    with dst.begin() as conn:
        conn.execute(schema.api_keys.insert().values(**row._mapping))
    src.dispose()
    dst.dispose()


async def test_fifty_at_once_through_two_clients_count_exactly_the_limit(redis_url: str) -> None:
    one, two = RedisWindows(redis_url), RedisWindows(redis_url)
    subject, minute = f"key:exact-{time.time_ns()}", int(time.time() // 60)
    hits = await asyncio.gather(
        *((one if n % 2 else two).hit(subject, minute, 10, None) for n in range(50))
    )
    assert sum(counted for counted, _, _ in hits) == 10
    assert all(requests >= 10 for counted, requests, _ in hits if not counted)
    await one.aclose()
    await two.aclose()


def test_redis_not_answering_is_a_clear_error_not_a_traceback(
    echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    config = auth_config(
        echo_upstream.base_url,
        db_url,
        rate_limits="redis",
        redis_url=f"redis://:s3cret@127.0.0.1:{_closed_port()}/0",
    )
    with serving(create_app(config)) as base_url:
        key = create_key(base_url.removesuffix("/v1"), rpm=5)
        r = httpx.post(
            f"{base_url}/chat/completions",
            json={"model": "echo", "messages": USER},
            headers={"authorization": f"Bearer {key['secret']}"},
            timeout=30,
        )
    assert r.status_code == 500
    error = r.json()["error"]
    assert "Rate limits cannot be checked: Redis at 127.0.0.1" in error["message"]
    assert "s3cret" not in r.text and "Traceback" not in r.text


def _closed_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_rate_limits_need_a_url() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"auth\.redis_url"):
        AuthConfig(rate_limits="redis")
