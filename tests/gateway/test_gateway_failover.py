"""The failover's parts on their own: the circuit breaker, backoff, and reading upstream answers."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError
from tests.conftest import remote_config

from polyroute.config import Config
from polyroute.errors import UpstreamError, UpstreamIncomplete
from polyroute.gateway.breaker import CircuitBreaker
from polyroute.gateway.failover import BACKOFF_CAP_S, backoff_delay
from polyroute.providers.openai_compat import (
    StreamCheck,
    completion_problem,
    parse_retry_after,
    redact_secrets,
)

USER = [{"role": "user", "content": "hello"}]


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    b = CircuitBreaker(failures=3, open_s=0.05)
    for _ in range(2):
        b.failed("m")
    assert b.allow("m") and b.state("m") == "closed"
    b.succeeded("m")  # a success resets the count: failures must be consecutive
    for _ in range(3):
        b.failed("m")
    assert b.state("m") == "open" and not b.allow("m") and not b.healthy("m")
    assert 0 < b.retry_after("m") <= 0.05
    time.sleep(0.06)
    assert b.state("m") == "half_open" and b.healthy("m")
    assert b.allow("m")  # the probe
    assert not b.allow("m") and not b.healthy("m")  # one probe at a time
    b.failed("m")  # the probe failed: open again
    assert b.state("m") == "open"
    time.sleep(0.06)
    assert b.allow("m")
    b.succeeded("m")
    assert b.state("m") == "closed" and b.allow("m") and b.allow("m")
    assert b.state("other") == "closed"


def test_breaker_release_frees_a_probe_without_judging() -> None:
    b = CircuitBreaker(failures=1, open_s=0.0)
    b.failed("m")
    assert b.allow("m") and not b.allow("m")
    b.released("m")
    assert b.allow("m")


def test_breaker_thresholds_come_from_the_config_globally_and_per_model() -> None:
    cfg = Config.model_validate(
        {
            "providers": {"up": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [
                {"name": "flaky", "provider": "up", "breaker": {"failures": 1, "cooldown_s": 5}},
                {"name": "steady", "provider": "up"},
            ],
            "breaker": {"failures": 2, "cooldown_s": 60},
        }
    )
    b = CircuitBreaker.from_config(cfg)
    assert b.thresholds("flaky") == (1, 5.0) and b.thresholds("steady") == (2, 60.0)
    b.failed("flaky")
    b.failed("steady")
    assert b.state("flaky") == "open" and 4 < b.retry_after("flaky") <= 5
    assert b.state("steady") == "closed"  # one failure of two
    b.failed("steady")
    assert b.state("steady") == "open" and 59 < b.retry_after("steady") <= 60
    defaults = CircuitBreaker.from_config(Config())
    assert defaults.thresholds("any") == (3, 30.0)  # the documented defaults


@pytest.mark.parametrize(
    "bad", [{"failures": 0}, {"cooldown_s": 0}, {"cooldown_s": -1}, {"failure": 3}]
)
def test_breaker_options_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"breaker": bad})


def test_backoff_grows_is_jittered_capped_and_honours_retry_after() -> None:
    delays = [backoff_delay(k, None) for k in range(12)]
    assert all(d is not None and 0 < d <= BACKOFF_CAP_S for d in delays)
    assert delays[0] is not None and delays[0] <= 0.2 and delays[3] is not None
    assert delays[3] >= 0.2 * 8 * 0.5
    assert backoff_delay(0, 2.0) == pytest.approx(2.0, abs=0.2)
    assert backoff_delay(0, BACKOFF_CAP_S + 1) is None  # too long: move on instead


def test_retry_after_parses_seconds_and_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-4") == 0.0 and parse_retry_after("nan") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = parse_retry_after(later)
    assert value is not None and 25 <= value <= 31


def test_secrets_are_redacted() -> None:
    text = "Incorrect API key provided: sk-proj-abcd1234efgh5678. Use key sk-ab***wxyz"
    out = redact_secrets(text)
    assert "abcd1234" not in out and "sk-proj" not in out and "***" not in out
    assert out.startswith("Incorrect API key provided: [redacted]")
    assert "hunter2" not in redact_secrets("your key hunter2 is bad", "hunter2")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "not an object"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"index": 0}]}, "without a message"),
        ({"choices": [{"message": {}}], "usage": {"prompt_tokens": "ten"}}, "usage.prompt_tokens"),
        ({"choices": [{"message": {}}], "usage": {"completion_tokens": True}}, "usage.completion"),
        ({"choices": [{"message": {}}], "usage": {"total_tokens": 1e30}}, "usage.total_tokens"),
        ({"choices": [{"message": {}}], "usage": {"prompt_tokens": 2**63}}, "usage.prompt"),
        ({"choices": [{"message": {}}], "usage": "lots"}, "usage that is not an object"),
    ],
)
def test_incomplete_answers_are_named(data: Any, problem: str) -> None:
    found = completion_problem(data)
    assert found is not None and problem in found


def test_whole_answer_has_no_problem() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert completion_problem({"choices": [{"message": {"content": "x"}}], "usage": usage}) is None


def _event(choices: Any, **extra: Any) -> bytes:
    return b"data: " + orjson.dumps({"choices": choices, **extra})


def test_stream_check_wants_every_choice_finished() -> None:
    check = StreamCheck("up", 1000)
    assert check.event(b": keep-alive") is None
    check.event(_event([{"index": 0, "delta": {"content": "a"}}]))
    with pytest.raises(UpstreamIncomplete, match="before the answer finished"):
        check.ended()
    check.event(_event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    check.ended()
    with pytest.raises(UpstreamIncomplete, match="no answer"):
        StreamCheck("up", 1000).ended()
    with pytest.raises(UpstreamIncomplete, match="not JSON"):
        StreamCheck("up", 1000).event(b"data: {oops")
    with pytest.raises(UpstreamError, match="mid-stream"):
        StreamCheck("up", 1000).event(b'data: {"error": {"message": "overloaded"}}')


def test_bad_usage_fails_a_stream_only_before_its_answer_is_whole() -> None:
    bad = {"prompt_tokens": "ten"}
    with pytest.raises(UpstreamIncomplete, match="usage"):
        StreamCheck("up", 1000).event(_event([{"index": 0, "delta": {}}], usage=bad))
    check = StreamCheck("up", 1000)
    check.event(_event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    assert check.event(_event([], usage=bad))["usage"] is None


async def test_health_is_cached_and_shared(asgi_client: Any, db_url: str) -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"object": "list", "data": []})

    cfg = remote_config("http://upstream.test/v1", db_url)
    client = await asgi_client(cfg, httpx.MockTransport(handle))
    for _ in range(20):
        r = await client.get("/health")
        assert r.status_code == 200
    # One check of each model, not 20.
    assert len(calls) == len(cfg.models)
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert len(calls) == len(cfg.models)


async def test_fallbacks_must_name_models(db_url: str) -> None:
    from polyroute.config import Config

    with pytest.raises(ValueError, match="fallbacks: 'nope' is not a configured model"):
        Config.model_validate(
            {
                "providers": {"up": {"api": "openai", "base_url": "http://x/v1"}},
                "models": [{"name": "a", "provider": "up", "fallbacks": ["nope"]}],
            }
        )


async def test_upstream_failures_teach_online_routers_a_zero(asgi_client: Any, db_url: str) -> None:
    from polyroute.config import Config

    def handle(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if body["model"] == "fail-500":
            return httpx.Response(500, json={"error": {"message": "down"}})
        message = {"role": "assistant", "content": "hi"}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": message}]})

    cfg = Config.model_validate(
        {
            "store": {"database_url": db_url},
            "providers": {"up": {"api": "openai", "base_url": "http://upstream.test/v1"}},
            # ucb1 tries the models it knows nothing of in order: broken first.
            "models": [
                {"name": "broken", "provider": "up", "upstream_model": "fail-500"},
                {"name": "echo", "provider": "up"},
            ],
            "routers": {"bandit": {"kind": "ucb1"}},
        }
    )
    client = await asgi_client(cfg, httpx.MockTransport(handle))
    router = client.gateway.learning.routers["bandit"]
    for _ in range(4):
        r = await client.post("/v1/chat/completions", json={"model": "bandit", "messages": USER})
        assert r.status_code == 200 and r.json()["model"] == "echo"  # broken fell back
    for _ in range(50):  # the lesson is taught off the request path
        arms = router.state_dict()["arms"]
        if "broken" in arms:
            break
        await asyncio.sleep(0.01)
    arms = router.state_dict()["arms"]
    assert arms["broken"]["n"] >= 1 and arms["broken"]["sum"] == 0
    assert "echo" not in arms  # successes are taught by feedback, not by answering


async def test_a_router_whose_models_are_all_paused_answers_503(
    asgi_client: Any, db_url: str
) -> None:
    from polyroute.config import Config

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "down"}})

    cfg = Config.model_validate(
        {
            "store": {"database_url": db_url},
            "providers": {"up": {"api": "openai", "base_url": "http://upstream.test/v1"}},
            "models": [{"name": "a", "provider": "up"}, {"name": "b", "provider": "up"}],
            "routers": {"any": {"kind": "random"}},
        }
    )
    client = await asgi_client(cfg, httpx.MockTransport(handle))
    statuses = []
    for _ in range(4):
        r = await client.post("/v1/chat/completions", json={"model": "any", "messages": USER})
        statuses.append(r.status_code)
    # Each request tries both (502); after three, both breakers are open.
    assert statuses[:3] == [502, 502, 502]
    assert statuses[3] == 503
    assert r.json()["error"]["code"] == "circuit_open"
    assert int(r.headers["retry-after"]) >= 1
