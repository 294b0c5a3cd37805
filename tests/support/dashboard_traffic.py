"""Real traffic for the dashboard: a gateway config over the echo upstream, and a client
that sends requests through routers (and directly), then feedback on the answers.

Used by the browser test and by ``scripts/dashboard_screenshots.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai

from polyroute.config import Config

REPO = Path(__file__).resolve().parents[2]
BENCH_RESULTS = REPO / "tests" / "fixtures" / "local_bench.jsonl"
#: The score a "user" gives each model's answers: the routers should learn to prefer echo.
QUALITY = {"echo": 1.0, "cheap": 0.6, "renamed": 0.2}


def dashboard_config(upstream_url: str, db_url: str) -> Config:
    """Three models on the echo upstream (one with no price), four routers, a leaderboard."""
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "feedback": {"save_interval_s": 0.2},
            "dashboard": {"bench_results": [str(BENCH_RESULTS)]},
            "providers": {"up": {"api": "openai", "base_url": upstream_url}},
            "models": [
                {"name": "echo", "provider": "up", "input_price": 1.0, "output_price": 2.0},
                {
                    "name": "cheap",
                    "provider": "up",
                    "upstream_model": "echo",
                    "input_price": 0.1,
                    "output_price": 0.2,
                },
                {"name": "renamed", "provider": "up", "upstream_model": "echo-upstream-name"},
                {"name": "broken", "provider": "up", "upstream_model": "fail-500"},
            ],
            "routers": {
                "ucb": {"kind": "ucb1"},
                "thompson": {"kind": "thompson", "seed": 7},
                "wrr": {"kind": "wrr", "weights": {"echo": 2, "cheap": 1}},
            },
            "default_router": "ucb",
        }
    )


PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about routers.",
    "Explain TCP slow start in one sentence.",
    "Translate 'good morning' into Italian.",
    "Name three sorting algorithms.",
]


def send_traffic(base_url: str, waves: int = 1, pause_s: float = 0.0) -> dict[str, Any]:
    """Send ``waves`` rounds of requests (and feedback on the routed ones) to ``base_url``
    (the gateway's ``/v1`` URL). Returns what was sent, for the caller to check."""
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    sent: dict[str, Any] = {"requests": 0, "errors": 0, "feedback": 0, "ids": [], "models": {}}
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for wave in range(waves):
            plan = ["ucb"] * 4 + ["thompson"] * 3 + ["wrr"] * 2 + ["echo", "renamed"]
            for i, model in enumerate(plan):
                prompt = PROMPTS[(wave + i) % len(PROMPTS)]
                messages = [{"role": "user", "content": prompt}]
                if i % 4 == 3:  # some streamed, as real clients do
                    chunks = list(
                        client.chat.completions.create(
                            model=model,
                            messages=messages,  # type: ignore[arg-type]
                            stream=True,
                            stream_options={"include_usage": True},
                        )
                    )
                    trace_id, answered = chunks[0].id, chunks[0].model
                else:
                    r = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
                    trace_id, answered = r.id, r.model
                sent["requests"] += 1
                sent["ids"].append(trace_id)
                sent["models"][answered] = sent["models"].get(answered, 0) + 1
                if model in ("ucb", "thompson"):
                    fb = http.post(
                        "/feedback",
                        json={"trace_id": trace_id, "score": QUALITY[answered], "source": "demo"},
                    )
                    if fb.status_code != 200:
                        raise AssertionError(f"feedback on {trace_id} ({model}, #{i}): {fb.text}")
                    sent["feedback"] += 1
            if wave % 2 == 0:
                try:
                    client.chat.completions.create(
                        model="broken", messages=[{"role": "user", "content": "fail"}]
                    )
                except openai.APIStatusError:
                    sent["requests"] += 1
                    sent["errors"] += 1
            if pause_s and wave < waves - 1:
                time.sleep(pause_s)
    return sent
