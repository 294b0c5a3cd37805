"""The fault suite: failoverbench's 16 scenarios against the real gateway and the real SDK.

A fault-injecting upstream on 127.0.0.1 (tests/support/fault_upstream.py) breaks each
answer a different way. Each scenario has its expected outcome: answered whole by a retry
or a fallback, or a clear OpenAI-style error with the right status. None may hand the
client an incomplete answer as a success: every 200 below is checked to be the whole answer,
and every stream to end with ``stop`` (or to raise).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import serving
from tests.support.fault_scenarios import ALONE, SCENARIOS, STREAM_ONLY, fault_config
from tests.support.fault_upstream import (
    ANSWER,
    FaultUpstream,
    blackhole,
    closed_port,
    running_fault_upstream,
)

from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e
USER: Any = [{"role": "user", "content": "count to eight"}]


@pytest.fixture(scope="module")
def fault_upstream() -> Iterator[FaultUpstream]:
    with running_fault_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(
    fault_upstream: FaultUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('faults') / 'polyroute.db'}"
    with blackhole() as hole:
        cfg = fault_config(fault_upstream.base_url, db_url, closed_port(), hole)
        with serving(create_app(cfg)) as base_url:
            yield base_url, db_url


@pytest.fixture(scope="module")
def client(gateway: tuple[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway[0], api_key="unused", max_retries=0, timeout=20)


def streamed(client: openai.OpenAI, model: str, **extra: Any) -> tuple[str, list[Any]]:
    chunks = list(client.chat.completions.create(model=model, messages=USER, stream=True, **extra))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def trace(db_url: str, trace_id: str) -> dict[str, Any]:
    store = Store(db_url)
    try:
        for _ in range(100):
            found = store.get_trace(trace_id)
            if found is not None:
                return found
            time.sleep(0.05)
    finally:
        store.dispose()
    raise AssertionError(f"trace {trace_id} was not recorded")


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in STREAM_ONLY])
def test_fault_falls_back_to_a_whole_answer(client: openai.OpenAI, scenario: str) -> None:
    r = client.chat.completions.create(model=f"f-{scenario}", messages=USER)
    assert r.model == "ok"
    assert r.choices[0].message.content == ANSWER
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fault_in_a_stream_falls_back_or_is_rescued(client: openai.OpenAI, scenario: str) -> None:
    text, chunks = streamed(client, f"f-{scenario}")
    assert text == ANSWER
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]  # one stream, stitched: one role


@pytest.mark.parametrize("scenario", list(ALONE))
def test_fault_without_fallback_is_a_clear_error(
    client: openai.OpenAI, gateway: tuple[str, str], scenario: str
) -> None:
    status, code = ALONE[scenario]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=f"alone-{scenario}", messages=USER)
    e = caught.value
    assert e.status_code == status
    assert isinstance(e.body, dict) and e.body["code"] == code
    if scenario in ("503-retry-after", "429-retry-after"):
        assert e.response.headers["retry-after"] == "1"
    if scenario == "usage-wrong-types":
        # In a stream the bad usage comes after the whole answer (and its stop): the
        # client has a complete answer; only the token count is lost.
        assert streamed(client, f"alone-{scenario}")[0] == ANSWER
        return
    # The same before a stream's first chunk: the status, not a 200 with an error inside.
    # (The trickling upstream answers JSON to a stream request: that is seen at once.)
    with pytest.raises(openai.APIStatusError) as caught:
        streamed(client, f"alone-{scenario}")
    assert caught.value.status_code == (502 if scenario == "trickling-body" else status)


@pytest.mark.parametrize("scenario", sorted(STREAM_ONLY))
def test_broken_stream_without_fallback_never_ends_as_success(
    client: openai.OpenAI, scenario: str
) -> None:
    if scenario == "malformed-sse":
        # Broken before the first chunk: an error status.
        with pytest.raises(openai.APIStatusError) as caught:
            streamed(client, f"alone-{scenario}")
        assert caught.value.status_code == 502
        return
    # Rescued by the same model, which breaks again each time: the stream raises in-band.
    got: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model=f"alone-{scenario}", messages=USER, stream=True
        ):
            got.append(chunk)
    assert not isinstance(caught.value, openai.APIStatusError)
    finishes = [c.choices[0].finish_reason for c in got if c.choices]
    assert "stop" not in finishes and finishes[-1] == "error"


def test_retries_honour_retry_after_then_answer(client: openai.OpenAI) -> None:
    for model in ("retry-503", "retry-429"):
        t0 = time.monotonic()
        r = client.chat.completions.create(model=model, messages=USER)
        assert r.choices[0].message.content == ANSWER and r.model == model
        assert time.monotonic() - t0 >= 1.0  # waited for Retry-After: 1 before the retry
    r = client.chat.completions.create(model="retry-500", messages=USER)
    assert r.choices[0].message.content == ANSWER


def test_refused_key_falls_back_and_is_redacted(
    client: openai.OpenAI, gateway: tuple[str, str]
) -> None:
    r = client.chat.completions.create(model="auth", messages=USER)
    assert r.model == "ok" and r.choices[0].message.content == ANSWER
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="auth-alone", messages=USER)
    assert caught.value.status_code == 502
    message = caught.value.message
    assert "sk-proj" not in message and "abcd1234" not in message
    assert "refused polyroute's credentials (401)" in message
    assert caught.value.body["code"] == "upstream_auth_failed"  # type: ignore[index]
    # Nor does the stored trace keep the key.
    stored = trace(gateway[1], r.id)
    first = stored["attempts"][0]
    assert first["status"] == 502 and "sk-proj" not in first["error"]


def test_a_too_long_prompt_moves_to_a_larger_model(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="small", messages=USER)
    assert r.model == "large" and r.choices[0].message.content == ANSWER


def test_invalid_request_is_not_failed_over(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="bad-request", messages=USER)


def test_half_sent_tool_call_ends_with_an_error_not_stop(client: openai.OpenAI) -> None:
    got: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="tool-cut", messages=USER, stream=True):
            got.append(chunk)
    assert "unreachable" in str(caught.value)
    finishes = [c.choices[0].finish_reason for c in got if c.choices]
    assert finishes[-1] == "error" and "stop" not in finishes


def test_a_models_own_breaker_thresholds_are_used(
    client: openai.OpenAI, gateway: tuple[str, str]
) -> None:
    # breaker: {failures: 1, cooldown_s: 600} on this model (the default is 3 and 30 s).
    with pytest.raises(openai.APIStatusError) as first:
        client.chat.completions.create(model="trips-at-once", messages=USER)
    assert first.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as second:
        client.chat.completions.create(model="trips-at-once", messages=USER)
    assert second.value.status_code == 503 and "circuit_open" in str(second.value.body)
    assert 590 < float(second.value.response.headers["retry-after"]) <= 600
    health = httpx.get(gateway[0].removesuffix("/v1") + "/health", timeout=5).json()
    assert health["models"]["trips-at-once"]["circuit"] == "open"


def test_stream_ending_without_finish_is_not_a_success(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError):
        streamed(client, "no-done")


def test_rescue_is_marked_in_the_trace(client: openai.OpenAI, gateway: tuple[str, str]) -> None:
    text, chunks = streamed(
        client, "f-stream-cut-after-first", stream_options={"include_usage": True}
    )
    assert text == ANSWER
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    stored = trace(gateway[1], chunks[0].id)
    assert stored["status"] == 200 and stored["model"] == "ok"
    broken, rescue = stored["attempts"]
    assert broken["model"] == "f-stream-cut-after-first" and broken["status"] == 502
    assert "stream rescued after 3 characters: continued by attempt 1 on ok" in broken["error"]
    assert broken["rescued"] is True  # a column of its own, not only the error's text
    assert rescue["model"] == "ok" and rescue["status"] == 200 and rescue["rescued"] is False
    metrics = httpx.get(gateway[0].removesuffix("/v1") + "/metrics", timeout=5).text
    rescues = [
        line
        for line in metrics.splitlines()
        if line.startswith('polyroute_stream_rescues_total{model="f-stream-cut-after-first"')
    ]
    assert rescues and float(rescues[0].rsplit(" ", 1)[1]) >= 1


def test_a_client_that_leaves_cancels_the_upstream_call(
    gateway: tuple[str, str], fault_upstream: FaultUpstream
) -> None:
    # headers-late never answers: the gateway's call waits on it (up to its 1 s deadline).
    before = fault_upstream.stats.abandoned
    body = {"model": "alone-trickling-body", "messages": USER}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway[0]}/chat/completions", json=body, timeout=0.3)
    for _ in range(40):  # well before the gateway's own 1 s deadline would end it
        if fault_upstream.stats.abandoned > before:
            break
        time.sleep(0.01)
    assert fault_upstream.stats.abandoned > before
