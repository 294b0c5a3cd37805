"""In-process rate limits: sliding windows for RPM and TPM, a count for parallel requests."""

from __future__ import annotations

import pytest

from polyroute.auth.keys import Limits
from polyroute.auth.limits import RateLimiter
from polyroute.errors import KeyRateLimited, UpstreamRejected, redact_keys


def test_rpm_is_a_sliding_window_of_sixty_seconds() -> None:
    limiter, limits = RateLimiter(), Limits(rpm=2)
    for t in (0.0, 10.0):
        limiter.check("k", limits, now=t)
        limiter.take("k", limits, now=t)
        limiter.done("k", 0, now=t)
    with pytest.raises(KeyRateLimited) as refused:
        limiter.check("k", limits, now=30.0)
    assert refused.value.headers is not None
    assert refused.value.headers["retry-after"] == "30"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    limiter.check("k", limits, now=60.5)  # the first request has left the window


def test_tpm_counts_the_tokens_of_finished_requests() -> None:
    limiter, limits = RateLimiter(), Limits(tpm=100)
    limiter.check("k", limits, now=0)
    limiter.take("k", limits, now=0)
    limiter.done("k", 100, now=1)
    with pytest.raises(KeyRateLimited, match="tokens per minute"):
        limiter.check("k", limits, now=2)
    limiter.check("k", limits, now=61.5)


def test_parallel_limits_requests_in_flight() -> None:
    limiter, limits = RateLimiter(), Limits(parallel=1)
    limiter.check("k", limits)
    limiter.take("k", limits)
    with pytest.raises(KeyRateLimited, match="in flight"):
        limiter.check("k", limits)
    limiter.done("k", 0)
    limiter.check("k", limits)


def test_upstream_errors_that_echo_a_key_are_redacted() -> None:
    echoed = "Incorrect API key provided: sk-proj-abcdefghijklmnop1234. Bearer abc.def.ghi.jkl"
    err = UpstreamRejected(echoed, status_code=401)
    assert "sk-proj" not in err.message and "abc.def" not in err.message
    assert err.message.count("[redacted]") == 2
    assert redact_keys("max_tokens must be below 100") == "max_tokens must be below 100"


def test_a_key_limited_to_models_needs_its_routers_listed() -> None:
    from polyroute.auth.keys import KeyInfo

    assert KeyInfo(id="a").may_use("auto", is_router=True)
    limited = KeyInfo(id="b", models=("echo",))
    assert limited.may_use("echo", is_router=False)
    assert not limited.may_use("dear", is_router=False)
    assert not limited.may_use("auto", is_router=True)  # a router could pick any model
    assert KeyInfo(id="c", models=("echo",), routers=("auto",)).may_use("auto", is_router=True)
