"""Every chat request is recorded with its real status, and the recorder's state is visible.

Rejected bodies (400, 413), unknown models (404), bugs (500, with the error) each leave a
trace; ``/health`` and ``/metrics`` show the journal, the backlog and what was refused.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import remote_config

from polyroute.config import Config

USER = [{"role": "user", "content": "hello"}]


def upstream() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        answer = {"role": "assistant", "content": "hi"}
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            },
        )

    return httpx.MockTransport(handle)


def config(db_url: str) -> Config:
    raw = remote_config("http://upstream.test/v1", db_url).model_dump()
    raw["server"] = {"max_body_bytes": 2000}
    return Config.model_validate(raw)


async def traces(client: Any) -> dict[int, list[dict[str, Any]]]:
    await client.gateway.recorder.flush()
    by_status: dict[int, list[dict[str, Any]]] = {}
    for row in client.gateway.store.list_traces(limit=1000):
        by_status.setdefault(row["status"], []).append(row)
    return by_status


async def test_rejected_requests_are_recorded_with_their_status(
    asgi_client: Any, db_url: str
) -> None:
    client = await asgi_client(config(db_url), upstream())
    post = "/v1/chat/completions"
    as_json = {"content-type": "application/json"}
    assert (await client.post(post, content=b"{not json", headers=as_json)).status_code == 400
    assert (
        await client.post(post, content=b"{}", headers={"content-type": "text/plain"})
    ).status_code == 415
    assert (await client.post(post, json={"model": "echo", "messages": []})).status_code == 400
    assert (await client.post(post, content=b"x" * 5000, headers=as_json)).status_code == 413
    assert (await client.post(post, json={"model": "m" * 300, "messages": USER})).status_code == 404
    assert (await client.post(post, json={"model": "echo", "messages": USER})).status_code == 200
    got = await traces(client)
    assert sorted((s, len(rows)) for s, rows in got.items()) == [
        (200, 1),
        (400, 2),
        (404, 1),
        (413, 1),
        (415, 1),
    ]
    by_model = {r["requested_model"]: r for r in got[400]}
    assert "not valid JSON" in by_model[""]["error"]
    assert "messages" in by_model["echo"]["error"]
    assert "2000 bytes" in got[413][0]["error"]
    assert got[404][0]["requested_model"] == "m" * 200  # cut to the column, not refused
    # The rejected body is kept (redacted) like any other, for whoever debugs the client.
    trace = client.gateway.store.get_trace(by_model["echo"]["id"])
    assert trace["request_body"] == {"model": "echo", "messages": []}


async def test_a_bug_is_recorded_as_a_500_with_its_error(
    asgi_client: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await asgi_client(config(db_url), upstream())

    def broken(_name: str) -> Any:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(client.gateway.pool, "resolve", broken)
    r = await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER})
    assert r.status_code == 500 and "exploded" not in r.text  # never leaked to the client ...
    [row] = (await traces(client))[500]
    assert row["error"] == "RuntimeError: resolver exploded"  # ... but in the trace


def parse(text: str) -> dict[str, float]:
    return {
        s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
    }


async def test_health_and_metrics_show_the_recorders_backlog(asgi_client: Any, db_url: str) -> None:
    client = await asgi_client(config(db_url), upstream())
    for _ in range(3):
        r = await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER})
        assert r.status_code == 200
    await client.gateway.recorder.flush()
    recorder = (await client.get("/health")).json()["recorder"]
    assert recorder["journaled"] == 3 and recorder["written"] == 3
    assert recorder["queue_depth"] == 0 and recorder["dropped"] == 0
    assert recorder["quarantined"] == 0 and recorder["writer_alive"] is True
    assert recorder["journal_bytes"] > 0  # the open segment stays until it is sealed
    samples = parse((await client.get("/metrics")).text)
    assert samples["polyroute_recorder_journaled_total"] == 3
    assert samples["polyroute_recorder_written_total"] == 3
    assert samples["polyroute_recorder_queue_depth"] == 0
    assert samples["polyroute_recorder_dropped_total"] == 0
    assert samples["polyroute_recorder_quarantined_total"] == 0
    assert samples["polyroute_recorder_journal_bytes"] == recorder["journal_bytes"]
    assert samples["polyroute_recorder_writer_up"] == 1


def sse_upstream() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        chunk = b'{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}'
        body = b"data: " + chunk + b"\n\ndata: " + chunk + b"\n\ndata: [DONE]\n\n"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handle)


async def test_a_bug_in_a_stream_is_a_500_not_a_client_that_left(
    asgi_client: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await asgi_client(config(db_url), sse_upstream())

    def broken(_chunk: Any, _parts: Any) -> None:
        raise RuntimeError("relay bug")

    monkeypatch.setattr("polyroute.gateway.chat._collect_text", broken)
    body = {"model": "echo", "messages": USER, "stream": True}
    with pytest.raises(RuntimeError):  # the in-process transport re-raises what the app raised
        await client.post("/v1/chat/completions", json=body)
    got = await traces(client)
    assert 499 not in got
    assert got[500][0]["error"] == "RuntimeError: relay bug"
