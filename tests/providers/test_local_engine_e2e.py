"""The embedded llama.cpp engine, end to end: real models, real server, real openai client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from tests.conftest import serving

from polyroute.config import Config, ModelConfig, default_config
from polyroute.gateway import create_app
from polyroute.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'local.db'}"
    base = default_config()
    broken = ModelConfig(name="broken-local", provider="local", path="/nonexistent/model.gguf")
    cfg = base.model_copy(
        update={
            "store": base.store.model_copy(update={"database_url": db_url}),
            "models": [*base.models, broken],
        }
    )
    with serving(create_app(Config.model_validate(cfg.model_dump()))) as url:
        yield url, db_url


def test_local_model_answers_streamed_and_not_with_matching_usage(
    local_gateway: tuple[str, str],
) -> None:
    url, _ = local_gateway
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    r = client.chat.completions.create(
        model="smollm2-135m", messages=QUESTION, max_tokens=16, temperature=0
    )  # type: ignore[arg-type]
    text = r.choices[0].message.content or ""
    assert "paris" in text.lower()
    assert r.model == "smollm2-135m"
    assert (
        r.usage is not None and r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 16
    )

    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m", messages=QUESTION, max_tokens=16, temperature=0,  # type: ignore[arg-type]
            stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy decoding: the same answer both ways
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        r.usage.prompt_tokens,
        r.usage.completion_tokens,
    )


def test_qwen_is_offered_and_answers(local_gateway: tuple[str, str]) -> None:
    url, _ = local_gateway
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    r = client.chat.completions.create(
        model="qwen2.5-coder-0.5b", messages=[{"role": "user", "content": "What is 2+3? Reply with the number only."}],  # type: ignore[list-item]
        max_tokens=8, temperature=0,
    )  # fmt: skip
    assert "5" in (r.choices[0].message.content or "")


def test_auto_routes_with_the_builtin_router(local_gateway: tuple[str, str]) -> None:
    """The embedded default serves model="auto": its kNN router knows Qwen does arithmetic."""
    url, _ = local_gateway
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is 4 plus 5?"}],
        max_tokens=8, temperature=0,
    )  # fmt: skip
    r = raw.parse()
    assert raw.headers["x-polyroute-router"] == "local-router"
    scores = json.loads(raw.headers["x-polyroute-scores"])
    assert scores["qwen2.5-coder-0.5b"] > scores["smollm2-135m"]
    assert r.model == "qwen2.5-coder-0.5b"
    assert "9" in (r.choices[0].message.content or "")


def test_concurrent_requests_queue_safely_without_blocking_the_loop(
    local_gateway: tuple[str, str],
) -> None:
    url, _ = local_gateway
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    finished = threading.Event()
    live_answered_while_generating: list[bool] = []

    def ask(i: int) -> str:
        r = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": f"Count from 1 to {i + 20}."}],  # type: ignore[list-item]
            max_tokens=48, temperature=0,
        )  # fmt: skip
        return r.choices[0].message.content or ""

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(ask, i) for i in range(4)]
        # While four generations queue on one model, the server still answers at once.
        with httpx.Client(timeout=30) as http:
            r = http.get(url.removesuffix("/v1") + "/health/live")
            live_answered_while_generating.append(not all(f.done() for f in futures))
            assert r.status_code == 200
        answers = [f.result(timeout=120) for f in futures]
        finished.set()
    assert all(answers)
    assert live_answered_while_generating == [True]


def test_a_missing_local_model_is_a_clear_503_and_unhealthy(local_gateway: tuple[str, str]) -> None:
    url, _ = local_gateway
    with httpx.Client(timeout=30) as http:
        r = http.post(
            f"{url}/chat/completions", json={"model": "broken-local", "messages": QUESTION}
        )
        assert r.status_code == 503
        assert "does not exist" in r.json()["error"]["message"]
        health = http.get(url.removesuffix("/v1") + "/health").json()
    assert health["models"]["smollm2-135m"]["ready"] is True
    assert health["models"]["broken-local"]["ready"] is False


def test_local_requests_are_recorded_as_free(
    local_gateway: tuple[str, str], tmp_path: Path
) -> None:
    url, db_url = local_gateway
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=4)  # type: ignore[arg-type]
    import time

    deadline = time.monotonic() + 10
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = [r for r in Store(db_url).recent_requests() if r["model"] == "smollm2-135m"]
        if rows:
            break
        time.sleep(0.1)
    assert rows and rows[0]["cost_status"] == "free" and rows[0]["cost_usd"] == 0.0


def test_a_streamed_tool_call_reads_as_one_call_in_the_sdk(local_gateway: tuple[str, str]) -> None:
    """llama-cpp-python repeats the call's id and name in each chunk; the client sees them once."""
    url, _ = local_gateway
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    ask = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [weather],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 48,
        "temperature": 0,
    }
    chunks = list(client.chat.completions.create(stream=True, **ask))  # type: ignore[call-overload]
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 1  # the arguments came in pieces
    assert [d.id is not None for d in deltas] == [True] + [False] * (len(deltas) - 1)
    assert [d.function.name for d in deltas if d.function and d.function.name] == ["get_weather"]
    assert {d.index for d in deltas} == {0}
    with client.chat.completions.stream(**ask) as events:  # the SDK's helper
        completion = events.get_final_completion()
    choice = completion.choices[0]
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and call.id
    assert choice.finish_reason == "tool_calls"
    # Greedy decoding: the streamed call is the one the non-streamed request returns.
    whole = client.chat.completions.create(**ask)  # type: ignore[call-overload]
    (same,) = whole.choices[0].message.tool_calls or []
    assert (same.function.name, same.function.arguments) == ("get_weather", call.function.arguments)
    assert whole.choices[0].message.function_call is None
