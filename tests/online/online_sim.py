"""Synthetic bandit problems for the online-router tests: seeded, small, exact."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from polyroute.routing.base import Candidate, RouteRequest
from polyroute.routing.online import OnlineRouter
from polyroute.routing.tradeoff import FloatArray

#: 1000 input + 1000 output tokens: a candidate priced $p per 1M tokens costs $0.002·p.
REQUEST = RouteRequest(prompt="q", input_tokens=1000, output_tokens=1000)

Reward = Callable[[str, FloatArray | None], float]


def candidates(names: Sequence[str], price: float = 1.0) -> list[Candidate]:
    return [Candidate(n, input_price=price, output_price=price) for n in names]


def bernoulli(p: dict[str, float], rng: np.random.Generator) -> Reward:
    """Reward 1 with probability p[model], else 0 (context ignored)."""
    return lambda model, _ctx: float(rng.random() < p[model])


def run(
    router: OnlineRouter,
    cands: Sequence[Candidate],
    reward: Reward,
    steps: int,
    contexts: Callable[[int], FloatArray | None] = lambda _t: None,
) -> list[str]:
    """Route ``steps`` requests, feeding back each reward; the models chosen, in order."""
    chosen = []
    for t in range(steps):
        ctx = contexts(t)
        model = router.route_with_context(REQUEST, cands, ctx).model
        router.update(model, reward(model, ctx), ctx)
        chosen.append(model)
    return chosen


def shares(chosen: Sequence[str]) -> dict[str, float]:
    counts = Counter(chosen)
    return {m: n / len(chosen) for m, n in counts.items()}


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> FloatArray:
    x = rng.normal(size=(n, dim))
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float64)


class FakeEmbedder:
    """An :class:`~polyroute.embeddings.minilm.Embedder` mapping known texts to fixed vectors."""

    model_id = "fake"
    fingerprint = "fake-embedder"

    def __init__(self, vectors: dict[str, FloatArray]) -> None:
        self.vectors = vectors
        self.dim = len(next(iter(vectors.values())))
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([len(t.split()) for t in texts], dtype=np.int64)
