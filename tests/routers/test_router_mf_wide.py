"""mf's wide term: a linear map of the embedding added to the tower's output (``wide_decay``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tests.routers.router_fakes import TopicEmbedder
from tests.routers.test_router_mf import NEWCOMER, specialist_data, topic_prompts

from polyroute.routing.persist import load_router, save_router
from polyroute.routing.routers.mf import MFRouter, _gradients, _loss


def _net(rng: np.random.Generator, d: int = 5, h: int = 4, dim: int = 3, m: int = 2) -> dict:
    return {
        "w1": rng.normal(0, 0.5, (d, h)).astype(np.float32),
        "b1": rng.normal(0, 0.1, h).astype(np.float32),
        "w2": rng.normal(0, 0.5, (h, dim)).astype(np.float32),
        "v": rng.normal(0, 0.5, (dim, m)).astype(np.float32),
        "c": rng.normal(0, 0.1, m).astype(np.float32),
        "ws": rng.normal(0, 0.5, (d, dim)).astype(np.float32),
    }


def test_the_wide_terms_gradient_is_the_losss() -> None:
    rng = np.random.default_rng(0)
    net = {k: v.astype(np.float64) for k, v in _net(rng).items()}
    x = rng.normal(0, 1, (7, 5))
    y = rng.uniform(0, 1, (7, 2))
    mask = np.ones_like(y)
    mask[0, 1] = 0.0
    grads = _gradients(net, x, y, mask, 0.0, 0.0)
    eps = 1e-6
    for i, j in [(0, 0), (2, 1), (4, 2)]:
        up = {k: v.copy() for k, v in net.items()}
        down = {k: v.copy() for k, v in net.items()}
        up["ws"][i, j] += eps
        down["ws"][i, j] -= eps
        numeric = (_loss(up, x, y, mask) - _loss(down, x, y, mask)) / (2 * eps)
        assert abs(grads["ws"][i, j] - numeric) < 1e-5


def test_without_wide_decay_there_is_no_wide_term(embedder: TopicEmbedder) -> None:
    data = specialist_data(10)
    router = MFRouter(hidden=8, dim=3, ensemble=1, embedder=embedder)
    router.fit(embedder.embed(data.prompts), data.scores, data.models)
    assert not any(key.endswith(".ws") for key in router.state())


def test_a_wide_router_learns_saves_and_takes_a_new_model(
    embedder: TopicEmbedder, tmp_path: Path
) -> None:
    data = specialist_data()
    router = MFRouter(hidden=8, dim=4, ensemble=2, wide_decay=1e-3, embedder=embedder)
    router.fit(embedder.embed(data.prompts), data.scores, data.models)
    state = router.state()
    assert state["0.ws"].shape == (embedder.dim, 4) and np.abs(state["0.ws"]).max() > 0
    np.testing.assert_allclose(router.predict(topic_prompts()), np.eye(3), atol=0.25)
    anchors = [p for i in range(4) for p in topic_prompts(200 + i)]
    router.add_model("newcomer", embedder.embed(anchors), np.tile(NEWCOMER, 4))
    after = router.predict(topic_prompts())
    assert after[0, 3] > 0.6 and after[1, 3] > 0.6 and after[2, 3] < 0.4
    loaded = load_router(save_router(router, tmp_path / "r"), embedder=embedder)
    assert isinstance(loaded, MFRouter) and loaded.wide_decay == 1e-3
    np.testing.assert_allclose(loaded.predict(anchors), router.predict(anchors), atol=1e-6)
