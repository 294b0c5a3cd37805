"""When auth is on, teams, per-key text storage, CORS, and RPM shared through PostgreSQL."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from tests.auth.support import (
    ADMIN,
    admin_headers,
    auth_config,
    create_key,
    eventually,
    key_money,
)
from tests.conftest import serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.config import Config
from polyroute.errors import ConfigError
from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi there"}]


def _with(config: Config, **changes: Any) -> Config:
    data = config.model_dump()
    for dotted, value in changes.items():
        section, _, field = dotted.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return Config.model_validate(data)


def test_a_public_address_without_an_admin_key_refuses_to_start(
    echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYROUTE_ADMIN_KEY", raising=False)
    public = _with(auth_config(echo_upstream.base_url, db_url), server__host="0.0.0.0")
    with pytest.raises(ConfigError, match="POLYROUTE_ADMIN_KEY"):
        create_app(public)


def test_auth_none_serves_without_keys_and_warns(
    echo_upstream: EchoUpstream, db_url: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("POLYROUTE_ADMIN_KEY", raising=False)
    config = _with(auth_config(echo_upstream.base_url, db_url), server__host="0.0.0.0", auth="none")
    with caplog.at_level(logging.WARNING):
        app = create_app(config)
    assert "auth: none" in caplog.text
    with serving(app) as base_url:
        c = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        assert c.chat.completions.create(model="echo", messages=USER).choices


def test_on_loopback_without_an_admin_key_auth_stays_off(
    echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYROUTE_ADMIN_KEY", raising=False)
    with serving(create_app(auth_config(echo_upstream.base_url, db_url))) as base_url:
        c = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        assert c.models.list().data
        # Yet the Host allow-list holds: a rebound DNS name is refused.
        assert httpx.get(base_url + "/models", headers={"host": "attacker.test"}).status_code == 421
        # And nobody makes keys over HTTP without the admin key.
        root = base_url.removesuffix("/v1")
        assert httpx.post(root + "/admin/keys", json={}).status_code == 403


def test_the_admin_key_can_come_from_a_file(
    echo_upstream: EchoUpstream, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYROUTE_ADMIN_KEY", raising=False)
    (tmp_path / "admin.key").write_text(ADMIN + "\n")
    config = auth_config(echo_upstream.base_url, db_url, admin_key_file=str(tmp_path / "admin.key"))
    with serving(create_app(config)) as base_url:
        assert httpx.get(base_url + "/models").status_code == 401
        assert httpx.get(base_url + "/models", headers=admin_headers()).status_code == 200


@pytest.fixture
def gateway(echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    config = _with(
        auth_config(echo_upstream.base_url, db_url), server__cors_origins=["https://app.test"]
    )
    with serving(create_app(config)) as base_url:
        yield base_url.removesuffix("/v1")


def test_keys_of_a_team_share_its_budget(gateway: str) -> None:
    r = httpx.put(
        f"{gateway}/admin/teams/research", json={"budget_usd": 0.004}, headers=admin_headers()
    )
    assert r.status_code == 200, r.text
    a, b = create_key(gateway, team="research"), create_key(gateway, team="research")
    for key in (a, b):  # $0.002 each: the team's $0.004 is gone
        openai.OpenAI(base_url=f"{gateway}/v1", api_key=key["secret"], max_retries=0).chat.completions.create(model="dear", messages=USER, max_tokens=2)  # fmt: skip

    def team_spend() -> None:  # b's settlement may land after a's
        assert key_money(gateway, a["id"])["spend"]["team_usd"] == pytest.approx(0.004)

    eventually(team_spend)
    with pytest.raises(openai.RateLimitError, match="budget"):
        openai.OpenAI(base_url=f"{gateway}/v1", api_key=a["secret"], max_retries=0).chat.completions.create(model="dear", messages=USER, max_tokens=2)  # fmt: skip


def test_a_key_without_store_text_leaves_no_text_in_the_store(gateway: str, db_url: str) -> None:
    key = create_key(gateway, store_text=False)
    c = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key["secret"], max_retries=0)
    answer = c.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "secret plan"}]
    )

    def stored() -> tuple[Any, ...]:
        with sa.create_engine(db_url).connect() as conn:
            row = conn.execute(
                sa.text("SELECT request_body, response_text FROM requests WHERE id = :id"),
                {"id": answer.id},
            ).first()
        assert row is not None
        return tuple(row)

    assert eventually(stored) == (None, None)


def test_cors_only_for_configured_origins(gateway: str) -> None:
    pre = httpx.options(
        f"{gateway}/v1/chat/completions",
        headers={"origin": "https://app.test", "access-control-request-method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.test"
    other = httpx.get(f"{gateway}/health/live", headers={"origin": "https://evil.test"})
    assert "access-control-allow-origin" not in other.headers


def test_rpm_is_shared_by_replicas_through_postgresql(
    echo_upstream: EchoUpstream, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    config = auth_config(echo_upstream.base_url, postgres_url, rate_limits="database")
    # Two apps, each with its own in-memory counters: only the database is shared.
    with serving(create_app(config)) as one, serving(create_app(config)) as two:
        key = create_key(one.removesuffix("/v1"), rpm=6)
        clients = [
            openai.OpenAI(base_url=u, api_key=key["secret"], max_retries=0) for u in (one, two)
        ]
        if time.time() % 60 > 54:  # the shared window is the calendar minute: start a fresh one
            time.sleep(60.5 - time.time() % 60)
        answered = refused = 0
        for i in range(10):
            try:
                clients[i % 2].chat.completions.create(model="echo", messages=USER)
                answered += 1
            except openai.RateLimitError as e:
                assert e.response.headers["retry-after"]
                refused += 1
    assert (answered, refused) == (6, 4)


def test_tpm_is_shared_by_replicas_through_postgresql(
    echo_upstream: EchoUpstream, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    config = auth_config(echo_upstream.base_url, postgres_url, rate_limits="database")
    with serving(create_app(config)) as one, serving(create_app(config)) as two:
        # "hi there" uses 3 prompt + 2 answer tokens: two requests use the minute's 10.
        key = create_key(one.removesuffix("/v1"), tpm=10)
        if time.time() % 60 > 50:
            time.sleep(60.5 - time.time() % 60)
        clients = [
            openai.OpenAI(base_url=u, api_key=key["secret"], max_retries=0) for u in (one, two)
        ]
        engine = sa.create_engine(postgres_url)
        for n, c in enumerate(clients, 1):
            c.chat.completions.create(model="echo", messages=USER)
            eventually(lambda n=n: _window_tokens(engine, f"key:{key['id']}", 5 * n))
        engine.dispose()
        with pytest.raises(openai.RateLimitError) as refused:
            clients[0].chat.completions.create(model="echo", messages=USER)
    headers = refused.value.response.headers
    message = refused.value.response.json()["error"]["message"]
    assert "tokens per minute (shared by every replica)" in message  # app one alone saw 5
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == (
        "10",
        "0",
    )


def _window_tokens(engine: sa.Engine, subject: str, tokens: int) -> None:
    """Assert the store's current minute holds ``tokens`` tokens for ``subject``."""
    with engine.connect() as conn:
        found = conn.scalar(
            sa.text("SELECT sum(tokens) FROM rate_windows WHERE subject = :s"), {"s": subject}
        )
    assert found == tokens
