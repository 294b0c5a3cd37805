"""``model="auto"`` on a learned router end to end: a kNN router trained on real MiniLM
embeddings, loaded from its directory by the gateway, asked through the real openai client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openai
import pytest
from tests.conftest import serving
from tests.gateway.test_gateway_routing import routed_config
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app
from polyroute.routing.knob import Knob
from polyroute.routing.persist import save_router
from polyroute.routing_eval.dataset import RoutingDataset
from polyroute.routing_eval.train import train_router
from polyroute.store import Store

pytestmark = pytest.mark.e2e

MATH = [
    "What is 17 times 23?", "Solve for x: 3x + 5 = 20.", "Compute the integral of x^2 from 0 to 3.",
    "What is the square root of 144?", "Add 2389 and 4512.", "Is 91 a prime number?",
    "Divide 1024 by 16.", "What is 15% of 240?", "Factor x^2 - 5x + 6.",
    "How many degrees are in the angles of a triangle?", "What is 9 cubed?", "Simplify 18/24.",
]  # fmt: skip
POEMS = [
    "Write a poem about the moon.", "Compose a haiku about autumn leaves.",
    "Write a sonnet about the sea.", "A short poem about a lonely lighthouse, please.",
    "Write verses about spring rain.", "Give me a limerick about a cat.",
    "Write a love poem for my partner.", "A poem about mountains at dawn.",
    "Compose a ballad about a sailor.", "Write a rhyming poem about winter.",
    "A free-verse poem about the city at night.", "Write an ode to coffee.",
]  # fmt: skip


def train_math_poem_router(out: Path, models: tuple[str, str]) -> Path:
    """A kNN router on which ``models[0]`` answers math well and poems badly, ``models[1]``
    the other way round; saved in ``out``."""
    prompts = MATH + POEMS
    scores = np.array([[1.0, 0.0]] * len(MATH) + [[0.0, 1.0]] * len(POEMS))
    data = RoutingDataset(
        ids=[f"q{i}" for i in range(len(prompts))],
        prompts=prompts,
        models=list(models),
        scores=scores,
        costs=np.full(scores.shape, 1e-4),
        tasks=["math"] * len(MATH) + ["poem"] * len(POEMS),
    )
    result = train_router(data, kind="knn", knob=Knob(lam=0.0), params={"k": 3})
    return save_router(result.router, out)


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'echo' answers math well and poems badly; 'renamed' the other way round."""
    return train_math_poem_router(tmp_path_factory.mktemp("routers") / "knn", ("echo", "renamed"))


def test_auto_sends_each_prompt_to_the_model_that_answers_it_best(
    echo_upstream: EchoUpstream, db_url: str, router_dir: Path
) -> None:
    cfg = routed_config(
        echo_upstream.base_url, db_url, {"learned": {"kind": "knn", "path": str(router_dir)}},
        "learned", models=("echo", "renamed"),
    )  # fmt: skip
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        math = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "What is 48 divided by 6?"}]
        )
        assert math.parse().model == "echo"
        assert math.headers["x-polyroute-router"] == "learned"
        scores = json.loads(math.headers["x-polyroute-scores"])
        assert scores["echo"] > scores["renamed"]

        # Streaming goes through the router too.
        chunks = list(
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": "Write a short poem about the ocean."}],
                stream=True,
            )
        )
        assert {c.model for c in chunks} == {"renamed"}
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert "poem about the ocean" in text

    rows = Store(db_url).recent_requests()
    assert sorted(r["model"] for r in rows) == ["echo", "renamed"]
    assert {r["router"] for r in rows} == {"learned"}
