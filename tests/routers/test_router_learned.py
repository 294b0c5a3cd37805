"""Learned routers (knn, mlp): prediction, the knob at routing time, training and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder

from polyroute.errors import ConfigError, NoEligibleModel, UnknownPrice
from polyroute.routing.base import Candidate, RouteRequest
from polyroute.routing.knob import Knob
from polyroute.routing.persist import RouterFileError, load_router, read_manifest, save_router
from polyroute.routing.routers.knn import KNNRouter
from polyroute.routing.routers.learned import LearnedRouter
from polyroute.routing.routers.mf import MFRouter
from polyroute.routing.routers.mlp import MLPRouter
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset
from polyroute.routing_eval.train import learned_kinds, train_router

PRICES = {"cheap": (0.1, 0.1), "coder": (0.3, 0.3), "strong": (1.0, 1.0)}
TOPIC_TRUTH = {"math": [0, 0, 1], "code": [0, 1, 1], "poem": [1, 1, 1]}


def fitted(kind: str, dataset: RoutingDataset, embedder: TopicEmbedder) -> LearnedRouter:
    router: LearnedRouter
    if kind == "knn":
        router = KNNRouter(k=5, embedder=embedder)
    elif kind == "mf":
        router = MFRouter(hidden=16, dim=4, ensemble=2, embedder=embedder)
    else:
        router = MLPRouter(hidden=16, ensemble=2, embedder=embedder)
    router.fit(embedder.embed(dataset.prompts), dataset.scores, dataset.models, dataset.prompts)
    router.prices = dict(PRICES)
    return router


def candidates(*names: str) -> list[Candidate]:
    return [Candidate(n) for n in names]


@pytest.mark.parametrize("kind", ["knn", "mlp", "mf"])
def test_learns_which_model_answers_which_topic(
    kind: str, dataset: RoutingDataset, embedder: TopicEmbedder
) -> None:
    router = fitted(kind, dataset, embedder)
    predicted = router.predict(["a new math puzzle", "some code to fix", "write a poem"])
    assert predicted.shape == (3, 3)
    assert ((predicted >= 0) & (predicted <= 1)).all()
    truth = np.array([TOPIC_TRUTH["math"], TOPIC_TRUTH["code"], TOPIC_TRUTH["poem"]])
    assert np.abs(predicted - truth).max() < 0.25


def test_knn_averages_the_neighbours_scores_and_skips_unknown_ones(embedder: TopicEmbedder) -> None:
    keys = np.eye(4, dtype=np.float32)[:3]  # three training prompts on three axes
    scores = np.array([[1.0, 0.0], [0.0, np.nan], [0.5, 1.0]])
    router = KNNRouter(k=2, weighted=False, embedder=embedder)
    router.fit(keys, scores, ["a", "b"])
    query = np.array([[0.8, 0.6, 0.0, 0.0]], dtype=np.float32)  # nearest: 0, then 1
    assert router.predict_embeddings(query).tolist() == [[0.5, 0.0]]  # b's unknown is skipped
    far = np.array([[0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    assert router.predict_embeddings(far).shape == (1, 2)


def test_route_applies_lambda_and_explains(
    dataset: RoutingDataset, embedder: TopicEmbedder
) -> None:
    router = fitted("knn", dataset, embedder)
    request = RouteRequest(prompt="a poem about the sea", input_tokens=1000, output_tokens=0)
    router.lam = 0.0
    assert router.route(request, candidates("cheap", "coder", "strong")).model in {
        "cheap",
        "coder",
        "strong",
    }
    # λ = 500: a quality point is worth 2e-3 USD. On a poem all three answer well, so the
    # cheapest wins; on math only strong does, and its 9e-4 USD extra is worth it.
    router.lam = 500.0
    decision = router.route(request, candidates("cheap", "coder", "strong"))
    assert decision.model == "cheap"
    assert decision.costs["strong"] == pytest.approx(1e-3)
    assert decision.costs["cheap"] == pytest.approx(1e-4)
    assert set(decision.scores) == {"cheap", "coder", "strong"}
    assert decision.fallbacks[0] == "coder"
    assert "cheap: predicted quality" in decision.reason
    math = router.route(
        RouteRequest(prompt="math homework", input_tokens=1000, output_tokens=0),
        candidates("cheap", "coder", "strong"),
    )
    assert math.model == "strong"
    router.lam = 1e4  # now a quality point is worth only 1e-4 USD: strong is not worth it
    assert (
        router.route(
            RouteRequest(prompt="math homework", input_tokens=1000, output_tokens=0),
            candidates("cheap", "coder", "strong"),
        ).model
        == "cheap"
    )


def test_route_prefers_candidate_prices_and_ignores_unknown_models(
    dataset: RoutingDataset, embedder: TopicEmbedder
) -> None:
    router = fitted("knn", dataset, embedder)
    router.lam = 1e4
    request = RouteRequest(prompt="poem", input_tokens=1000, output_tokens=0)
    pricey_cheap = [
        Candidate("cheap", input_price=50.0, output_price=50.0),
        Candidate("coder"),
        Candidate("other"),
    ]
    decision = router.route(request, pricey_cheap)
    assert decision.model == "coder"
    assert "other" not in decision.scores
    with pytest.raises(NoEligibleModel, match="none of the eligible"):
        router.route(request, candidates("other"))


def test_unpriced_models_are_skipped_when_cost_matters(
    dataset: RoutingDataset, embedder: TopicEmbedder
) -> None:
    router = fitted("knn", dataset, embedder)
    router.prices = {"strong": PRICES["strong"]}
    router.lam = 1.0
    request = RouteRequest(prompt="poem", input_tokens=10)
    decision = router.route(request, candidates("cheap", "strong"))
    assert decision.model == "strong"
    assert "cheap" in decision.reason and "price" in decision.reason
    router.prices = {}
    with pytest.raises(UnknownPrice):
        router.route(request, candidates("cheap", "strong"))
    router.lam = 0.0  # quality only: prices do not matter
    assert router.route(request, candidates("cheap", "strong")).costs == {}


def test_training_calibrates_the_knob_out_of_fold(
    dataset: RoutingDataset, embedder: TopicEmbedder
) -> None:
    result = train_router(
        dataset, kind="knn", knob=Knob(min_quality_fraction=1.0), embedder=embedder, params={"k": 5}
    )
    router = result.router
    cal = router.calibration
    assert cal is not None and cal.met
    assert cal.reference_model == "strong"
    assert cal.quality == pytest.approx(1.0)
    # math to strong, code to coder, poems to cheap
    assert cal.cost == pytest.approx((1e-3 + 3e-4 + 1e-4) / 3)
    assert router.calibration_set is not None
    assert router.calibration_set.predicted.shape == dataset.scores.shape
    assert result.summary["prompts"] == 90
    assert result.summary["tasks"] == {"math": 30, "code": 30, "poem": 30}


def test_training_refuses_bad_input(dataset: RoutingDataset, embedder: TopicEmbedder) -> None:
    with pytest.raises(RoutingDataError, match="unknown learned router"):
        train_router(dataset, kind="random", embedder=embedder)
    no_costs = dataset.with_costs(np.full(dataset.scores.shape, np.nan))
    with pytest.raises(RoutingDataError, match="--prices"):
        train_router(no_costs, kind="knn", embedder=embedder)
    # ... which prices fix
    result = train_router(no_costs, kind="knn", embedder=embedder, prices=PRICES, params={"k": 5})
    assert result.router.prices == PRICES
    assert learned_kinds() == ["knn", "mf", "mlp"]


@pytest.mark.parametrize("kind", ["knn", "mlp", "mf"])
def test_save_and_load_round_trip(
    kind: str, dataset: RoutingDataset, embedder: TopicEmbedder, tmp_path: Path
) -> None:
    params = {"k": 5} if kind == "knn" else {"hidden": 8, "ensemble": 1}
    if kind == "mf":
        params["dim"] = 4
    result = train_router(
        dataset,
        kind=kind,
        knob=Knob(max_cost_fraction=0.5),
        embedder=embedder,
        prices=PRICES,
        params=params,
    )
    path = save_router(result.router, tmp_path / "r", training=result.summary)
    manifest = read_manifest(path)
    assert manifest["kind"] == kind
    assert manifest["models"] == ["cheap", "coder", "strong"]
    assert manifest["embedding"] == {
        "name": None,  # not one of polyroute's own embeddings
        "model": "test/topic-embedder",
        "sha256": "0" * 64,
        "dim": 8,
    }
    assert manifest["knob"] == {"max_cost_fraction": 0.5}
    assert manifest["training"]["prompts"] == 90
    loaded = load_router(path, embedder=embedder)
    assert type(loaded) is type(result.router)
    prompts = ["math again", "poem again"]
    np.testing.assert_allclose(loaded.predict(prompts), result.router.predict(prompts), atol=1e-6)
    assert loaded.lam == result.router.lam
    assert loaded.prices == PRICES
    # the stored calibration set lets the knob move without retraining
    before = loaded.lam
    loaded.set_knob(Knob(max_cost_fraction=0.2))
    assert loaded.lam > before


def test_loading_explains_what_is_wrong(
    dataset: RoutingDataset, embedder: TopicEmbedder, tmp_path: Path
) -> None:
    with pytest.raises(RouterFileError, match="no such directory"):
        load_router(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RouterFileError, match="not a trained router"):
        load_router(tmp_path / "empty")
    result = train_router(dataset, kind="knn", embedder=embedder, params={"k": 5})
    path = save_router(result.router, tmp_path / "r")
    with pytest.raises(RouterFileError, match="retrain"):
        load_router(path)  # trained on the fake embedder, not one polyroute has
    other = TopicEmbedder()
    other.fingerprint = "1" * 64  # same model name, other weights
    with pytest.raises(RouterFileError, match=r"this embedder is test/topic-embedder \(111"):
        load_router(path, embedder=other)
    arrays = path / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RouterFileError, match="sha256"):
        load_router(path, embedder=embedder)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RouterFileError, match="version 99"):
        load_router(path, embedder=embedder)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RouterFileError, match="non-empty"):
        save_router(result.router, tmp_path / "other")


def test_from_config_loads_and_overrides_the_knob(
    dataset: RoutingDataset,
    embedder: TopicEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from polyroute.embeddings.registry import EMBEDDINGS, EmbeddingChoice

    result = train_router(dataset, kind="knn", embedder=embedder, prices=PRICES, params={"k": 5})
    path = save_router(result.router, tmp_path / "r")
    topic = EmbeddingChoice(
        "topic", embedder.model_id, embedder.fingerprint, "test", lambda: embedder, cache=False
    )
    monkeypatch.setitem(EMBEDDINGS, "topic", topic)
    router = KNNRouter.from_config("auto", {"path": str(path), "lambda": 123.0})
    assert isinstance(router, KNNRouter)
    assert router.embedder is embedder  # the embedding its manifest names
    assert (router.name, router.lam) == ("auto", 123.0)
    with pytest.raises(ConfigError, match="not 'mlp'"):
        MLPRouter.from_config("m", {"path": str(path)})
    with pytest.raises(ConfigError, match=r"routers\.k\.k: unknown field"):
        KNNRouter.from_config("k", {"path": str(path), "k": 3})
    with pytest.raises(ConfigError, match="one of"):
        KNNRouter.from_config("k", {"path": str(path), "lambda": 1, "max_cost_fraction": 0.5})
    with pytest.raises(ConfigError, match="path"):
        KNNRouter.from_config("k", {})
