"""The online routers in the routers registry, built from config like every other router."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.online.online_sim import FakeEmbedder, candidates, unit_vectors

from polyroute.embeddings.minilm import DIM, MODEL_ID, WEIGHTS_SHA256
from polyroute.errors import ConfigError
from polyroute.routing.base import RouteRequest
from polyroute.routing.online import LinUCBRouter, ThompsonRouter, UCB1Router, learned_prior
from polyroute.routing.persist import save_router
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.knn import KNNRouter


def test_registered_under_their_kinds() -> None:
    assert ROUTERS.get("ucb1") is UCB1Router
    assert ROUTERS.get("thompson") is ThompsonRouter
    assert ROUTERS.get("linucb") is LinUCBRouter


def test_from_config_passes_the_options() -> None:
    ucb = ROUTERS.get("ucb1").from_config("explore", {"lambda": 250, "exploration": 0.3})
    assert isinstance(ucb, UCB1Router)
    assert (ucb.name, ucb.lam, ucb.exploration) == ("explore", 250.0, 0.3)
    lin = ROUTERS.get("linucb").from_config("ctx", {"alpha": 1.0, "dim": None, "seed": 3})
    assert isinstance(lin, LinUCBRouter)
    assert (lin.alpha, lin.dim, lin.seed, lin.features) == (1.0, None, 3, DIM + 1)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("ucb1", {"lamda": 1}, r"routers\.r\.lamda: unknown field"),
        ("ucb1", {"lambda": "cheap"}, r"routers\.r\.lambda: Input should be a valid number"),
        ("thompson", {"seed": True}, r"routers\.r\.seed: Input should be a valid integer"),
        ("ucb1", {"lambda": -1}, r"routers\.r\.lambda: Input should be greater than or equal to 0"),
        ("linucb", {"dim": 0}, r"routers\.r\.dim: Input should be greater than 0"),
        ("linucb", {"prior": 7}, r"routers\.r\.prior must be a directory path"),
    ],
)
def test_bad_config_names_the_field(kind: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ROUTERS.get(kind).from_config("r", options)


def trained_knn(tmp_path: Path) -> Path:
    """A kNN router on 'MiniLM' embeddings (fake vectors that say they are MiniLM's)."""
    rng = np.random.default_rng(0)
    keys = unit_vectors(rng, 40, DIM)
    scores = np.where(keys[:, :1] > 0, [[0.9, 0.1]], [[0.1, 0.9]])  # x above, y below
    embedder = FakeEmbedder({"unused": keys[0]})
    embedder.model_id, embedder.fingerprint = MODEL_ID, WEIGHTS_SHA256
    knn = KNNRouter("knn", k=5, embedder=embedder)
    knn.fit(keys.astype(np.float32), scores, ["x", "y"])
    return save_router(knn, tmp_path / "knn")


def test_linucb_prior_from_a_trained_router_directory(tmp_path: Path) -> None:
    router = ROUTERS.get("linucb").from_config("warm", {"prior": str(trained_knn(tmp_path))})
    assert isinstance(router, LinUCBRouter)
    assert router.prior_name is not None and router.prior_name.startswith("knn:")
    request = RouteRequest(prompt="p", input_tokens=10)
    up = np.zeros(DIM)
    up[0] = 1.0
    # No feedback yet: the decision is the kNN's, in both halves of the space.
    assert router.route_with_context(request, candidates(["x", "y"]), up).model == "x"
    assert router.route_with_context(request, candidates(["x", "y"]), -up).model == "y"


def test_a_missing_prior_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ROUTERS.get("linucb").from_config("warm", {"prior": str(tmp_path / "nothing")})


def test_learned_prior_of_an_unsaved_router_is_pinned_by_its_arrays() -> None:
    rng = np.random.default_rng(1)
    keys = unit_vectors(rng, 10, 8).astype(np.float32)
    names = []
    for shift in (0.0, 0.1):
        knn = KNNRouter("knn", k=3)
        knn.fit(keys, np.full((10, 2), 0.5 + shift), ["x", "y"])
        prior, name = learned_prior(knn)
        assert prior(keys[0].astype(np.float64), None) == pytest.approx(
            {"x": 0.5 + shift, "y": 0.5 + shift}
        )
        names.append(name)
    assert names[0] != names[1]
