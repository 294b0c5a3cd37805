"""Each request through the real gateway becomes a trace: decision, attempts, redacted body, answer."""

from __future__ import annotations

import openai
import pytest
from tests.conftest import serving
from tests.support.echo_upstream import EchoUpstream
from tests.traces.traces_support import USER, read_trace, traced_config

from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e
# "broken" (the upstream answers 500) is the router's first choice, "echo" its fallback.
PAIR = {"pair": {"kind": "wrr", "weights": {"broken": 5, "echo": 1}}}


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_first_try_and_its_fallback_are_both_in_the_trace(
    echo_upstream: EchoUpstream, store_url: str, stream: bool
) -> None:
    cfg = traced_config(echo_upstream.base_url, store_url, models=("broken", "echo"), routers=PAIR)
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        body = {"model": "pair", "messages": USER, "max_tokens": 7,
                "extra_body": {"api_key": "sk-do-not-store", "metadata": {"password": "hunter2", "team": "a"}}}  # fmt: skip
        if stream:
            chunks = list(client.chat.completions.create(stream=True, **body))  # type: ignore[call-overload]
            trace_id, answered = chunks[0].id, chunks[0].model
        else:
            r = client.chat.completions.create(**body)  # type: ignore[call-overload]
            trace_id, answered = r.id, r.model
    assert answered == "echo"
    trace = read_trace(store_url, trace_id)  # the server has stopped: everything is flushed
    assert trace is not None
    assert (trace["status"], trace["model"], trace["router"], trace["stream"]) == (
        200,
        "echo",
        "pair",
        stream,
    )
    decision = trace["decision"]
    assert decision["router"] == "pair" and decision["model"] == "broken"
    assert "echo" in decision["fallbacks"] and decision["reason"]

    first, second = trace["attempts"]
    assert (first["n"], first["model"], first["provider"], first["upstream_model"]) == (
        0,
        "broken",
        "up",
        "fail-500",
    )
    assert first["status"] >= 500 and "500" in first["error"] and first["latency_ms"] > 0
    assert first["input_tokens"] is None and first["cost_usd"] is None
    assert (second["n"], second["model"], second["status"], second["error"]) == (
        1,
        "echo",
        200,
        None,
    )
    assert second["input_tokens"] == trace["input_tokens"] and second["output_tokens"] == 2
    assert second["cost_usd"] == trace["cost_usd"] and second["cost_status"] == "known"
    assert second["latency_ms"] > 0 and second["started_at"] >= first["started_at"]
    if stream:
        assert second["ttft_ms"] is not None and second["ttft_ms"] <= second["latency_ms"]
    else:
        assert second["ttft_ms"] is None

    # Stored body: secrets gone at every depth, everything else (max_tokens too) kept.
    stored = trace["request_body"]
    assert "api_key" not in stored and stored["metadata"] == {"team": "a"}
    assert stored["max_tokens"] == 7 and stored["messages"] == USER and stored["model"] == "pair"
    # The answer: the message (non-stream) or the deltas joined (stream; echo adds spaces).
    assert trace["response_text"] == ("route me " if stream else "route me")


def test_a_direct_request_has_one_attempt_and_no_decision(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, db_url, models=("echo",))
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
    trace = read_trace(db_url, r.id)
    assert trace is not None and trace["decision"] is None and trace["router"] is None
    assert [(a["model"], a["status"]) for a in trace["attempts"]] == [("echo", 200)]
    assert trace["feedback"] == []


def test_an_upstream_refusal_is_a_trace_with_its_failed_attempt(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, db_url, models=("refused",))
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="refused", messages=USER)  # type: ignore[arg-type]
    rows = [t for t in _all(db_url) if t["requested_model"] == "refused"]
    assert len(rows) == 1 and rows[0]["status"] == 400
    trace = read_trace(db_url, rows[0]["id"])
    assert trace is not None and trace["response_text"] is None
    assert [(a["model"], a["status"]) for a in trace["attempts"]] == [("refused", 400)]
    assert "400" in trace["attempts"][0]["error"]


def test_with_store_text_off_no_prompt_or_answer_is_kept(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, db_url, models=("broken", "echo"), routers=PAIR,
                        store={"store_text": False})  # fmt: skip
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="pair", messages=USER)  # type: ignore[arg-type]
        s = list(client.chat.completions.create(model="echo", messages=USER, stream=True))  # type: ignore[arg-type]
    for trace_id in (r.id, s[0].id):
        trace = read_trace(db_url, trace_id)
        assert trace is not None and trace["status"] == 200
        assert trace["request_body"] is None and trace["response_text"] is None
        assert trace["attempts"]  # the rest of the trace is still there
    routed = read_trace(db_url, r.id)
    assert routed is not None and routed["decision"]["router"] == "pair"


def _all(db_url: str) -> list[dict[str, object]]:
    from polyroute.store import Store

    store = Store(db_url)
    try:
        return store.list_traces(limit=1000)
    finally:
        store.dispose()
