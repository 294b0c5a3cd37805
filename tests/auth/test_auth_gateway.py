"""Auth on, end to end: a real gateway on 127.0.0.1, the real openai client, a real store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
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

from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi there"}]


def assert_recorded(db_url: str, n: int) -> None:
    """Assert the recorder has written ``n`` requests (and that the usage rows match)."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM requests")) == n
            assert conn.scalar(sa.text("SELECT count(*) FROM key_usage")) == n
    finally:
        engine.dispose()


@pytest.fixture
def gateway(
    echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Any]]:
    """(root URL, app) of a gateway with the admin key set."""
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    app = create_app(auth_config(echo_upstream.base_url, db_url))
    with serving(app) as base_url:
        yield base_url.removesuffix("/v1"), app


def client(root: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{root}/v1", api_key=key, max_retries=0, timeout=10)


def test_nothing_but_health_live_answers_without_a_key(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    for method, path in [
        ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/feedback"),
        ("GET", "/ui"), ("GET", "/ui/api/traces"), ("GET", "/ui/api/summary"), ("GET", "/ui/api/keys"), ("GET", "/docs"),
        ("GET", "/openapi.json"), ("GET", "/health"), ("GET", "/admin/keys"), ("GET", "/nope"),
    ]:  # fmt: skip
        r = httpx.request(method, root + path, json={} if method == "POST" else None)
        assert r.status_code == 401, (path, r.status_code)
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(root + "/health/live").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client(root, "pr_00000000_not-a-real-key").models.list()


def test_a_key_made_by_the_admin_works_as_bearer_and_as_x_api_key(
    gateway: tuple[str, Any],
) -> None:
    root, _ = gateway
    key = create_key(root, alias="app")
    assert key["secret"].startswith(key["id"] + "_")
    answer = client(root, key["secret"]).chat.completions.create(model="echo", messages=USER)
    assert answer.choices[0].message.content == "hi there"
    r = httpx.post(
        f"{root}/v1/chat/completions",
        json={"model": "echo", "messages": USER},
        headers={"x-api-key": key["secret"]},
    )
    assert r.status_code == 200
    # A virtual key is not the admin's.
    r = httpx.get(f"{root}/admin/keys", headers={"authorization": f"Bearer {key['secret']}"})
    assert r.status_code == 403
    # Spend per key on /metrics (by alias) and on the dashboard's API.
    metrics = httpx.get(f"{root}/metrics").text
    assert 'polyroute_key_requests_total{key="app",team=""} 2.0' in metrics

    def dashboard_spend() -> None:
        spend = httpx.get(f"{root}/ui/api/keys", headers=admin_headers()).json()
        mine = next(k for k in spend["keys"] if k["alias"] == "app")
        assert mine["spend"]["by_model"]["echo"]["requests"] == 2

    eventually(dashboard_spend)


def test_secrets_are_stored_only_as_salted_hashes(gateway: tuple[str, Any], db_url: str) -> None:
    root, _ = gateway
    key = create_key(root)
    client(root, key["secret"]).chat.completions.create(model="echo", messages=USER)
    key_money(root, key["id"])  # its usage row is written
    eventually(lambda: assert_recorded(db_url, 1))
    import sqlalchemy as sa

    engine = Store(db_url).engine
    with engine.connect() as conn:
        for table in ("api_keys", "requests", "key_usage"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                assert key["secret"] not in str(tuple(row)), table
                assert ADMIN not in str(tuple(row)), table
    listed = httpx.get(f"{root}/admin/keys", headers=admin_headers()).json()["data"]
    assert all("secret" not in k and "secret_hash" not in k for k in listed)


def test_rpm_refuses_the_eleventh_request_with_retry_after(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    key = create_key(root, rpm=10)
    c = client(root, key["secret"])
    for n in range(10):
        raw = c.chat.completions.with_raw_response.create(model="echo", messages=USER)
        assert raw.headers["x-ratelimit-remaining-requests"] == str(9 - n)
    with pytest.raises(openai.RateLimitError) as refused:
        c.chat.completions.create(model="echo", messages=USER)
    response = refused.value.response
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-limit-requests"] == "10"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_small_budget_refuses_exactly_when_it_runs_out(
    gateway: tuple[str, Any],
) -> None:
    root, _ = gateway
    # "dear" costs $0.001 per output token; "hi there" answers with 2 tokens: $0.002 a call.
    key = create_key(root, budget_usd=0.01, rpm=100, soft_alert=0.8)
    c = client(root, key["secret"])
    for _ in range(5):
        c.chat.completions.create(model="dear", messages=USER, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as refused:
        c.chat.completions.create(model="dear", messages=USER, max_tokens=2)
    body = refused.value.response.json()["error"]
    assert body["code"] == "budget_exceeded"
    assert "$0.000000000 left" in body["message"]
    assert refused.value.response.headers["x-polyroute-budget-remaining-usd"] == "0.000000000"
    shown = key_money(root, key["id"])
    assert shown["rpm"] == 100
    assert shown["alert"] is True  # soft_alert 0.8: $0.008 of $0.01
    assert shown["spend"]["spent_usd"] == pytest.approx(0.01)
    assert shown["spend"]["reserved_usd"] == 0
    assert shown["spend"]["by_model"]["dear"]["requests"] == 5


def test_without_max_tokens_the_answer_is_capped_to_what_the_budget_pays_for(
    gateway: tuple[str, Any], echo_upstream: EchoUpstream
) -> None:
    root, _ = gateway
    key = create_key(root, budget_usd=0.003)
    client(root, key["secret"]).chat.completions.create(model="dear", messages=USER)
    sent = echo_upstream.stats.bodies[-1]
    assert sent["max_tokens"] == 3  # $0.003 at $0.001 a token, the prompt being free


def test_a_budgeted_key_cannot_use_a_model_without_a_price(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    key = create_key(root, budget_usd=1)
    with pytest.raises(openai.BadRequestError) as refused:
        client(root, key["secret"]).chat.completions.create(model="mystery", messages=USER)
    assert "price" in refused.value.response.json()["error"]["message"]


def test_allowed_models_and_expiry(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    key = create_key(root, models=["echo"])
    c = client(root, key["secret"])
    c.chat.completions.create(model="echo", messages=USER)
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="dear", messages=USER)
    old = create_key(root, expires="2020-01-01")
    with pytest.raises(openai.AuthenticationError):
        client(root, old["secret"]).chat.completions.create(model="echo", messages=USER)


def test_revocation_takes_effect_within_the_cache_ttl(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    key = create_key(root)
    c = client(root, key["secret"])
    c.models.list()
    r = httpx.delete(f"{root}/admin/keys/{key['id']}", headers=admin_headers())
    assert r.status_code == 200 and r.json()["revoked_at"]
    time.sleep(0.5)  # cache_ttl_s is 0.2 in these tests
    with pytest.raises(openai.AuthenticationError):
        c.models.list()


def test_rotation_gives_a_new_secret_and_retires_the_old(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    key = create_key(root)
    r = httpx.patch(
        f"{root}/admin/keys/{key['id']}", json={"rotate": True, "rpm": 5}, headers=admin_headers()
    )
    assert r.status_code == 200, r.text
    assert r.json()["rpm"] == 5
    new = r.json()["secret"]
    time.sleep(0.5)
    client(root, new).models.list()
    with pytest.raises(openai.AuthenticationError):
        client(root, key["secret"]).models.list()


def test_feedback_only_from_the_key_that_made_the_trace(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    mine, other = create_key(root), create_key(root)
    answer = client(root, mine["secret"]).chat.completions.create(model="echo", messages=USER)
    fb = {"trace_id": answer.id, "score": 1}
    r = httpx.post(f"{root}/v1/feedback", json=fb, headers={"x-api-key": other["secret"]})
    assert r.status_code == 403
    assert httpx.post(f"{root}/v1/feedback", json=fb, headers={"x-api-key": mine["secret"]}).status_code == 200  # fmt: skip
    assert httpx.post(f"{root}/v1/feedback", json=fb, headers=admin_headers()).status_code == 200


def test_the_dashboard_needs_the_admin_or_a_dashboard_key_that_sees_its_own_traces(
    gateway: tuple[str, Any], db_url: str
) -> None:
    root, _ = gateway
    viewer = create_key(root, permissions=["dashboard"])
    plain = create_key(root)
    seen = client(root, viewer["secret"]).chat.completions.create(model="echo", messages=USER)
    hidden = client(root, plain["secret"]).chat.completions.create(model="echo", messages=USER)
    eventually(lambda: assert_recorded(db_url, 2))
    as_viewer = {"authorization": f"Bearer {viewer['secret']}"}
    assert httpx.get(f"{root}/ui", headers={"x-api-key": plain["secret"]}).status_code == 403
    ids = [t["id"] for t in httpx.get(f"{root}/ui/api/traces", headers=as_viewer).json()["traces"]]
    assert ids == [seen.id]
    assert httpx.get(f"{root}/ui/api/traces/{hidden.id}", headers=as_viewer).status_code == 404
    assert httpx.get(f"{root}/ui/api/traces/{seen.id}", headers=as_viewer).status_code == 200
    assert httpx.get(f"{root}/ui/api/summary", headers=as_viewer).status_code == 403
    admin_ids = {
        t["id"]
        for t in httpx.get(f"{root}/ui/api/traces", headers=admin_headers()).json()["traces"]
    }
    assert {seen.id, hidden.id} <= admin_ids
    # A browser opens /ui?key=...: the key moves into an HttpOnly cookie.
    with httpx.Client(base_url=root) as browser:
        r = browser.get(f"/ui?key={viewer['secret']}")
        assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
        page = browser.get("/ui")
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"


def test_metrics_stay_loopback_or_need_a_token(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    assert httpx.get(f"{root}/metrics").status_code == 200  # the test client is on loopback
    assert (
        httpx.get(f"{root}/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    )


def test_other_hosts_are_refused_and_cors_is_off(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    r = httpx.get(f"{root}/health/live", headers={"host": "evil.example"})
    assert r.status_code == 421
    r = httpx.get(f"{root}/health/live", headers={"host": "localhost:1234", "origin": "https://evil.example"})  # fmt: skip
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


def test_the_newcomer_path_budget_and_rpm_each_refuse_when_they_run_out(
    gateway: tuple[str, Any],
) -> None:
    root, _ = gateway

    def run(model: str) -> list[str]:
        c = client(root, create_key(root, budget_usd=0.01, rpm=10)["secret"])
        codes = []
        for _ in range(12):
            try:
                c.chat.completions.create(model=model, messages=USER, max_tokens=2)
                codes.append("ok")
            except openai.RateLimitError as e:
                codes.append(e.response.json()["error"]["code"])
        return codes

    # "echo" costs a few millionths of a dollar: the 10 requests a minute run out first.
    assert run("echo") == ["ok"] * 10 + ["rate_limit_exceeded"] * 2
    # "dear" costs $0.002 a request: five fit the $0.01; a request refused for its budget
    # does not count toward the minute's 10.
    assert run("dear") == ["ok"] * 5 + ["budget_exceeded"] * 7


def _money(root: str, key_id: str) -> tuple[float, float]:
    spend = key_money(root, key_id)["spend"]
    return spend["spent_usd"], spend["reserved_usd"]


def test_a_stream_settles_to_its_real_cost(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    key = create_key(root, budget_usd=1)
    chunks = client(root, key["secret"]).chat.completions.create(
        model="exact", messages=[{"role": "user", "content": "a b c d e"}], max_tokens=50,
        stream=True,
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split() == ["a", "b", "c", "d", "e"]
    # Reserved 50 tokens' worth; charged the 5 the upstream reported.
    assert _money(root, key["id"]) == (pytest.approx(5e-6), 0)


def test_a_failed_request_releases_its_reservation(gateway: tuple[str, Any]) -> None:
    root, _ = gateway
    key = create_key(root, budget_usd=1)
    with pytest.raises(openai.InternalServerError):
        client(root, key["secret"]).chat.completions.create(
            model="broken", messages=USER, max_tokens=10
        )
    assert _money(root, key["id"]) == (0, 0)
