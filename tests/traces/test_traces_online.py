"""Online routers in the real gateway: they learn from feedback, and keep it across a restart."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import serving
from tests.support.echo_upstream import EchoUpstream
from tests.traces.traces_support import USER, traced_config, wait_for_trace

from polyroute.client import feedback
from polyroute.config import Config
from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = pytest.mark.e2e
BANDIT = {"bandit": {"kind": "ucb1", "exploration": 0.5}}


def ask(client: openai.OpenAI, model: str = "bandit") -> tuple[str, str]:
    r = client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    return r.id, r.model


def saved_arms(db_url: str) -> dict[str, dict[str, float]]:
    store = Store(db_url)
    try:
        return store.load_router_states().get("bandit", ("", {"arms": {}}))[1]["arms"]
    finally:
        store.dispose()


def test_ucb1_learns_from_feedback_and_remembers_it_after_a_restart(
    echo_upstream: EchoUpstream, store_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, store_url, routers=BANDIT)
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        _, untaught = ask(client)  # what the router picks knowing nothing
        favoured = "renamed" if untaught == "echo" else "echo"
        # Users like the *other* model: without learning, the router would never pick it.
        chosen = []
        for _ in range(40):
            trace_id, model = ask(client)
            chosen.append(model)
            given = feedback(client, trace_id, model == favoured)
            assert given["learning"] == {"router": "bandit", "model": model, "updated": True}
    late = Counter(chosen[20:])
    assert late[favoured] >= 16, chosen  # it learned: the favoured model wins the second half

    # Shutdown saved what it learned; a new gateway on the same database starts from there.
    arms = saved_arms(store_url)
    assert arms[favoured]["n"] + arms[untaught]["n"] == 40
    assert arms[favoured]["sum"] == arms[favoured]["n"] and arms[untaught]["sum"] == 0
    app = create_app(cfg)
    with serving(app) as base_url:
        router = app.state.gateway.learning.routers["bandit"]
        assert router.state_dict()["arms"] == arms
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        assert ask(client)[1] == favoured  # a fresh router would explore `untaught` first


def test_state_is_saved_in_the_background_while_serving(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(
        echo_upstream.base_url, db_url, routers=BANDIT, feedback={"save_interval_s": 0.05}
    )
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        trace_id, model = ask(client)
        feedback(client, trace_id, 0.75)
        deadline = time.monotonic() + 10
        while not saved_arms(db_url) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert saved_arms(db_url) == {model: {"n": 1, "sum": 0.75}}  # saved before shutdown


def test_only_the_first_feedback_teaches_and_failures_teach_nothing(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, db_url, models=("echo", "broken"),
                        routers={"bandit": {"kind": "thompson", "seed": 1}},
                        feedback={"recent_traces": 1})  # fmt: skip
    app = create_app(cfg)
    with serving(app) as base_url, httpx.Client() as http:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        trace_id, model = ask(client)
        assert model == "echo"  # broken failed over to echo, or echo was chosen
        assert feedback(client, trace_id, 1.0)["learning"]["updated"] is True
        again = feedback(client, trace_id, 0.0)["learning"]
        assert again["updated"] is False and "only its first feedback" in again["reason"]
        # Out of memory (recent_traces: 1) the store says it was already taught, too.
        other, _ = ask(client)
        wait_for_trace(db_url, trace_id)
        evicted = feedback(client, trace_id, 0.0)["learning"]
        assert evicted["updated"] is False and "only its first feedback" in evicted["reason"]
        # ... while a trace that left memory untaught still teaches (ucb/thompson need no context).
        ask(client)  # evicts `other` from memory
        wait_for_trace(db_url, other)
        assert feedback(client, other, 1.0)["learning"]["updated"] is True
        # A request that failed outright (only a model that fails) is stored, teaches nothing.
        resp = http.post(f"{base_url}/chat/completions", json={"model": "broken", "messages": USER})
        assert resp.status_code >= 500
    state = Store(db_url).load_router_states()["bandit"][1]
    assert state["arms"]["echo"] == {"successes": 2, "failures": 0}


def test_linucb_without_stored_text_says_it_could_not_learn(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg: Config = traced_config(echo_upstream.base_url, db_url,
                                routers={"ctx": {"kind": "linucb", "dim": 8}},
                                store={"store_text": False}, feedback={"recent_traces": 1})  # fmt: skip
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        first, _ = ask(client, "ctx")
        # In memory, the embedding computed for routing is reused.
        assert feedback(client, first, 1.0)["learning"]["updated"] is True
        second, _ = ask(client, "ctx")
        ask(client, "ctx")  # evicts the second
        wait_for_trace(db_url, second)
        learning = feedback(client, second, 1.0)["learning"]
        assert learning["updated"] is False and "store.store_text is off" in learning["reason"]


def test_linucb_rebuilds_an_evicted_context_from_the_stored_prompt(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    cfg = traced_config(echo_upstream.base_url, db_url, routers={"ctx": {"kind": "linucb", "dim": 8}},
                        feedback={"recent_traces": 1})  # fmt: skip
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        first, model = ask(client, "ctx")
        ask(client, "ctx")
        wait_for_trace(db_url, first)
        assert feedback(client, first, 1.0)["learning"] == {
            "router": "ctx",
            "model": model,
            "updated": True,
        }
    arms = Store(db_url).load_router_states()["ctx"][1]["arms"]
    assert arms[model]["n"] == 1


async def test_an_unusable_saved_state_is_logged_and_the_router_starts_afresh(
    echo_upstream: EchoUpstream, db_url: str, asgi_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(db_url)
    store.migrate()
    # Saved by a Thompson router that used to have this name.
    store.save_router_states(
        {"bandit": ("thompson", {"kind": "thompson", "version": 1, "arms": {}})}
    )
    store.dispose()
    client = await asgi_client(traced_config(echo_upstream.base_url, db_url, routers=BANDIT))
    router = client.gateway.learning.routers["bandit"]
    assert router.state_dict()["arms"] == {}
    assert "starts afresh" in caplog.text and "not 'ucb1'" in caplog.text
    r = await client.post("/v1/chat/completions", json={"model": "bandit", "messages": USER})
    assert r.status_code == 200
