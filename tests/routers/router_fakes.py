"""Fakes for the router tests: an embedder that is fast and deterministic, small datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from polyroute.routing_eval.dataset import RoutingDataset

TOPICS = ("math", "code", "poem")


class TopicEmbedder:
    """Embeds a text on the axis of the topic word it contains, plus a little hashed noise.

    Texts about one topic are near each other and far from the others, which is what a
    learned router needs to find; the noise keeps every vector distinct.
    """

    model_id = "test/topic-embedder"
    fingerprint = "0" * 64
    dim = 8

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            out[i] = np.random.default_rng(seed).normal(0, 0.1, self.dim)
            for t, topic in enumerate(TOPICS):
                if topic in text:
                    out[i, t] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([len(t.split()) for t in texts], dtype=np.int64)


def topic_dataset(n_per_topic: int = 30) -> RoutingDataset:
    """'cheap' is good at poems only, 'strong' at everything, 'coder' at code and poems.

    Costs: cheap 1e-4, coder 3e-4, strong 1e-3 USD a prompt.
    """
    prompts, scores, tasks = [], [], []
    truth = {"math": (0.0, 0.0, 1.0), "code": (0.0, 1.0, 1.0), "poem": (1.0, 1.0, 1.0)}
    for topic in TOPICS:
        for i in range(n_per_topic):
            prompts.append(f"{topic} question number {i}")
            scores.append(truth[topic])
            tasks.append(topic)
    n = len(prompts)
    return RoutingDataset(
        ids=[f"p{i}" for i in range(n)],
        prompts=prompts,
        models=["cheap", "coder", "strong"],
        scores=np.array(scores, dtype=np.float64),
        costs=np.tile([1e-4, 3e-4, 1e-3], (n, 1)),
        tasks=list(tasks),
    )
