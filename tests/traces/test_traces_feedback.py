"""``POST /v1/feedback`` through the real gateway: good and bad input, unknown ids, early feedback."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from tests.conftest import serving
from tests.support.echo_upstream import EchoUpstream
from tests.traces.traces_support import USER, read_trace, traced_config, wait_for_trace

from polyroute.client import afeedback, feedback
from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e


def test_scores_as_numbers_booleans_and_categories_are_stored(
    echo_upstream: EchoUpstream, store_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, store_url, models=("echo",),
                        feedback={"categories": {"good": 1.0, "bad": 0.0, "Thumbs Up": 0.9}})  # fmt: skip
    with serving(create_app(cfg)) as base_url, httpx.Client() as http:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
        given = [
            feedback(client, r.id, 0.25, source="grader:exact", comment="partly right"),
            feedback(client, r.id, True),
            feedback(client, r.id, "BAD"),
            http.post(f"{base_url}/feedback", json={"trace_id": r.id, "score": "thumbs-up"}).json(),
        ]
    assert [(g["score"], g["kind"], g["label"]) for g in given] == [
        (0.25, "number", None), (1.0, "boolean", None), (0.0, "category", "bad"), (0.9, "category", "Thumbs Up"),
    ]  # fmt: skip
    assert given[0]["object"] == "feedback" and given[0]["trace_id"] == r.id
    assert given[0]["source"] == "grader:exact" and given[0]["comment"] == "partly right"
    assert given[0]["learning"] is None  # no router chose this model: nothing to teach
    assert len({g["id"] for g in given}) == 4
    trace = read_trace(store_url, r.id)
    assert trace is not None
    assert [(f["id"], f["score"], f["kind"]) for f in trace["feedback"]] == [
        (g["id"], g["score"], g["kind"]) for g in given
    ]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"score": 1}, "trace_id", "Missing required parameter: 'trace_id'"),
        ({"trace_id": "TRACE"}, "score", "Missing required parameter: 'score'"),
        ({"trace_id": "TRACE", "score": 1.5}, "score", "1.5 is not in [0, 1]"),
        ({"trace_id": "TRACE", "score": -0.1}, "score", "is not in [0, 1]"),
        (
            {"trace_id": "TRACE", "score": "meh"},
            "score",
            "unknown category 'meh'; known categories: good, bad",
        ),
        (
            {"trace_id": "TRACE", "score": None},
            "score",
            "expected a number in [0, 1], true or false, or a category",
        ),
        ({"trace_id": "TRACE", "score": [1]}, "score", "expected a number in [0, 1]"),
        ({"trace_id": 42, "score": 1}, "trace_id", "expected the id of a chat completion"),
        ({"trace_id": "TRACE", "score": 1, "source": 7}, "source", "Invalid value for 'source'"),
        ({"trace_id": "TRACE", "score": 1, "comment": "x" * 10_001}, "comment", "at most 10000"),
        (
            {"trace_id": "TRACE", "scroe": 1},
            "scroe",
            "Unrecognized request argument supplied: scroe",
        ),
    ],
)
def test_bad_feedback_is_a_400_that_names_the_field(
    echo_upstream: EchoUpstream, db_url: str, body: dict[str, Any], param: str, message: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, db_url, models=("echo",))
    with serving(create_app(cfg)) as base_url, httpx.Client() as http:
        r = openai.OpenAI(base_url=base_url, api_key="unused").chat.completions.create(
            model="echo", messages=USER
        )  # type: ignore[arg-type]
        if body.get("trace_id") == "TRACE":
            body = {**body, "trace_id": r.id}
        resp = http.post(f"{base_url}/feedback", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"]
    trace = read_trace(db_url, r.id)
    assert trace is not None and trace["feedback"] == []  # nothing stored


def test_unknown_trace_and_non_json_bodies_get_openai_style_errors(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, db_url, models=("echo",))
    with serving(create_app(cfg)) as base_url, httpx.Client() as http:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.NotFoundError) as caught:
            feedback(client, "chatcmpl-nonesuch", 1.0)
        error = caught.value.body
        assert (
            isinstance(error, dict)
            and error["code"] == "trace_not_found"
            and error["param"] == "trace_id"
        )
        assert "No trace with id 'chatcmpl-nonesuch'" in error["message"]
        resp = http.post(
            f"{base_url}/feedback",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]


def test_feedback_before_the_trace_is_written_is_accepted(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    # The recorder holds its batch for a minute: the trace is only in memory when feedback comes.
    cfg = traced_config(echo_upstream.base_url, db_url, models=("echo",),
                        store={"flush_interval_s": 60, "batch_size": 1000})  # fmt: skip
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
        assert read_trace(db_url, r.id) is None  # not written yet
        given = feedback(client, r.id, "good")
        assert given["score"] == 1.0
    trace = read_trace(db_url, r.id)  # written at shutdown, feedback attached
    assert trace is not None and [f["id"] for f in trace["feedback"]] == [given["id"]]


async def test_feedback_for_a_trace_that_left_memory_is_found_in_the_store(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(
        echo_upstream.base_url, db_url, models=("echo",), feedback={"recent_traces": 1}
    )
    with serving(create_app(cfg)) as base_url:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
        first = await client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
        await client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]  # evicts the first
        wait_for_trace(db_url, first.id)
        given = await afeedback(client, first.id, 0.5)
        assert given["trace_id"] == first.id and given["score"] == 0.5
        await client.close()
