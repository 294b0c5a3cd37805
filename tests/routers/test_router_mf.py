"""The mf router: model vectors, adding a model from a few scores, priors, saving them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder

from polyroute.routing.base import Candidate, RouteRequest
from polyroute.routing.knob import Knob
from polyroute.routing.persist import load_router, read_anchor_pool, save_router
from polyroute.routing.routers.mf import MFRouter
from polyroute.routing.routers.mf_newcomer import fit_vector
from polyroute.routing_eval.anchors import anchor_pool, choose_anchors, informativeness
from polyroute.routing_eval.dataset import RoutingDataset
from polyroute.routing_eval.train import train_router

TOPICS = ("math", "code", "poem")
#: Each known model is good at one topic; the newcomer at math and code.
SPECIALISTS = {"mathy": (1, 0, 0), "cody": (0, 1, 0), "poet": (0, 0, 1)}
NEWCOMER = (1.0, 1.0, 0.0)
PRICES = {"mathy": (1.0, 1.0), "cody": (4.0, 4.0), "poet": (0.1, 0.1)}


def specialist_data(n_per_topic: int = 30) -> RoutingDataset:
    prompts, scores, tasks = [], [], []
    for t, topic in enumerate(TOPICS):
        for i in range(n_per_topic):
            prompts.append(f"{topic} question number {i}")
            scores.append([v[t] for v in SPECIALISTS.values()])
            tasks.append(topic)
    n = len(prompts)
    return RoutingDataset(
        ids=[f"p{i}" for i in range(n)],
        prompts=prompts,
        models=list(SPECIALISTS),
        scores=np.array(scores, dtype=np.float64),
        costs=np.tile([2e-4, 8e-4, 2e-5], (n, 1)),
        tasks=tasks,
    )


@pytest.fixture
def trained(embedder: TopicEmbedder) -> MFRouter:
    data = specialist_data()
    router = MFRouter(hidden=16, dim=4, ensemble=2, embedder=embedder)
    router.fit(embedder.embed(data.prompts), data.scores, data.models, data.prompts)
    router.prices = dict(PRICES)
    return router


def topic_prompts(i: int = 100) -> list[str]:
    return [f"{topic} question number {i}" for topic in TOPICS]


def test_learns_each_models_topic(trained: MFRouter) -> None:
    predicted = trained.predict(topic_prompts())
    np.testing.assert_allclose(predicted, np.eye(3), atol=0.25)


def test_a_new_model_is_fitted_from_a_few_anchors_with_the_rest_frozen(
    trained: MFRouter, embedder: TopicEmbedder
) -> None:
    before = trained.predict(topic_prompts())
    prompts = [p for i in range(4) for p in topic_prompts(200 + i)]  # 12 anchors, 4 a topic
    scores = np.tile(NEWCOMER, 4)
    used = trained.add_model(
        "newcomer", embedder.embed(prompts), scores, price=(0.5, 0.5), texts=prompts
    )
    assert used == 12
    assert trained.models == ["mathy", "cody", "poet", "newcomer"]
    assert trained.prices["newcomer"] == (0.5, 0.5)
    after = trained.predict(topic_prompts())
    np.testing.assert_allclose(after[:, :3], before, atol=1e-6)  # the others did not move
    assert after[0, 3] > 0.6 and after[1, 3] > 0.6 and after[2, 3] < 0.4
    decision = trained.route(RouteRequest(prompt="math question number 7"), [Candidate("newcomer")])
    assert decision.model == "newcomer"
    assert "prior" not in decision.reason


def test_three_anchors_move_the_vector_only_as_far_as_the_known_models_spread(
    trained: MFRouter, embedder: TopicEmbedder
) -> None:
    known = trained.model_vectors()[0]
    spread = np.linalg.norm(known - known.mean(axis=0), axis=1).max()
    # Three math prompts all answered right: enough to lean, not to leap.
    three = topic_prompts()[:1] * 3
    trained.add_model("lucky", embedder.embed(three), np.ones(3), texts=three)
    vector = trained.model_vectors()[0][-1]
    assert np.linalg.norm(vector - known.mean(axis=0)) < 2 * spread
    predicted = trained.predict(topic_prompts())[:, -1]
    assert predicted.min() > 0.0 and predicted.max() < 0.99


def test_fit_vector_follows_the_data_when_there_is_plenty() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2000, 3))
    truth = np.array([1.5, -2.0, 0.5, 0.3])
    y = (rng.random(2000) < 1 / (1 + np.exp(-(z @ truth[:3] + truth[3])))).astype(float)
    u = fit_vector(z, y, np.zeros(4), np.eye(4))
    np.testing.assert_allclose(u, truth, atol=0.25)
    # ... and stays at the prior mean with no data
    np.testing.assert_allclose(fit_vector(z[:0], y[:0], np.ones(4), np.eye(4)), np.ones(4))


def test_a_prior_is_a_price_weighted_mix_and_the_decision_says_so(trained: MFRouter) -> None:
    how = trained.add_prior("like-mathy", input_price=1.0, output_price=1.0)
    assert how.startswith("price-weighted mix of known models (mathy ")
    assert trained.priors == {"like-mathy": how}
    assert trained.prices["like-mathy"] == (1.0, 1.0)
    vectors = trained.model_vectors()[0]
    mathy, prior = vectors[0], vectors[-1]
    others = vectors[1:3]
    assert np.linalg.norm(prior - mathy) < min(np.linalg.norm(prior - o) for o in others)
    assert trained.add_prior("unpriced") == "mean of 3 known models"  # priors are not a base
    np.testing.assert_allclose(trained.model_vectors()[0][-1], vectors[:3].mean(axis=0))
    decision = trained.route(
        RouteRequest(prompt="math question number 1"), [Candidate("like-mathy")]
    )
    assert "a prior: price-weighted mix" in decision.reason
    assert "no data on like-mathy yet" in decision.reason


def test_data_replaces_a_prior(trained: MFRouter, embedder: TopicEmbedder) -> None:
    trained.add_prior("newcomer")
    prompts = [p for i in range(4) for p in topic_prompts(300 + i)]
    trained.add_model("newcomer", embedder.embed(prompts), np.tile(NEWCOMER, 4), texts=prompts)
    assert trained.priors == {}
    assert trained.models.count("newcomer") == 1


def test_bad_scores_are_refused(trained: MFRouter, embedder: TopicEmbedder) -> None:
    t = ["math question"]
    x = embedder.embed(t)
    with pytest.raises(ValueError, match="no score"):
        trained.add_model("x", x, np.array([np.nan]), texts=t)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        trained.add_model("x", x, np.array([2.0]), texts=t)
    with pytest.raises(ValueError, match="do not match"):
        trained.add_model("x", x, np.array([1.0, 0.0]), texts=t)
    with pytest.raises(ValueError, match="not trained"):
        MFRouter().add_prior("x")


def test_added_models_and_priors_survive_saving_and_the_knob_keeps_working(
    embedder: TopicEmbedder, tmp_path: Path
) -> None:
    data = specialist_data(10)
    result = train_router(
        data,
        kind="mf",
        knob=Knob(max_cost_fraction=0.5),
        embedder=embedder,
        prices=PRICES,
        params={"hidden": 8, "dim": 3, "ensemble": 1},
    )
    router = result.router
    assert isinstance(router, MFRouter)
    lam = router.lam
    prompts = [p for i in range(3) for p in topic_prompts(400 + i)]
    router.add_model(
        "newcomer", embedder.embed(prompts), np.tile(NEWCOMER, 3), price=(2, 2), texts=prompts
    )
    router.add_prior("future", 0.1, 0.2)
    assert router.lam == lam  # λ is per USD: kept for the new models
    path = save_router(router, tmp_path / "r", training=result.summary, anchors=result.anchors)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["priors"] == router.priors and "future" in manifest["priors"]
    assert manifest["anchors"]["count"] == len(result.anchors) == 30
    loaded = load_router(path, embedder=embedder)
    assert loaded.models == ["mathy", "cody", "poet", "newcomer", "future"]
    assert loaded.priors == router.priors
    np.testing.assert_allclose(loaded.predict(prompts), router.predict(prompts), atol=1e-6)
    # The calibration data covers the models it was trained on; re-targeting still works.
    loaded.set_knob(Knob(max_cost_fraction=0.2))
    assert loaded.calibration is not None and loaded.calibration.n_prompts == 30
    assert [r["id"] for r in read_anchor_pool(path)] == [r["id"] for r in result.anchors]


def test_informativeness_is_the_spread_of_the_models_scores() -> None:
    spread = informativeness(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, np.nan], [0.0, np.nan, np.nan]]))
    np.testing.assert_allclose(spread, [0.0, 0.5, 0.0])  # fewer than two known: 0


def test_the_anchor_pool_is_a_representative_sample_in_any_prefix() -> None:
    data = specialist_data(12)
    keep = [i for i, t in enumerate(data.tasks) if t == "math" or i % 2 == 0]
    data = data.take(keep)  # 12 math, 6 code, 6 poem prompts
    dup = data.take([0])  # the same text again, under another id
    data = RoutingDataset(
        ids=[*data.ids, "dup"], prompts=[*data.prompts, *dup.prompts], models=data.models,
        scores=np.vstack([data.scores, dup.scores]), costs=None, tasks=[*data.tasks, "math"],
    )  # fmt: skip
    pool = anchor_pool(data)
    assert len(pool) == 24  # the duplicate counts once
    assert len({"dup", data.ids[0]} & {r["id"] for r in pool}) == 1
    first = choose_anchors(pool, 4)
    assert sorted(r["task"] for r in first) == ["code", "math", "math", "poem"]
    half = [r["task"] for r in choose_anchors(pool, 12)]
    assert half.count("math") == 6 and half.count("code") == 3 == half.count("poem")
    assert all(r["informativeness"] == pytest.approx(np.sqrt(2) / 3, abs=1e-4) for r in pool)
    # another seed, another sample; the same seed, the same one
    assert [r["id"] for r in anchor_pool(data, seed=1)] != [r["id"] for r in pool]
    assert [r["id"] for r in anchor_pool(data)] == [r["id"] for r in pool]
    assert len(anchor_pool(data, size=5)) == 5


def test_the_pool_keeps_what_grading_an_llmrouter_question_needs(tmp_path: Path) -> None:
    from polyroute.bench.llmrouter import load_query_file
    from polyroute.routing_eval.anchors import anchor_line, questions_by_prompt

    rows = [
        {"task_name": "mmlu", "query": "Which is a fruit?", "ground_truth": "B",
         "metric": "em_mc", "choices": "['stone', 'apple']"},
        {"task_name": "gsm8k", "query": "2 + 2?", "ground_truth": "4", "metric": "GSM8K"},
    ]  # fmt: skip
    path = tmp_path / "default_query_train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    questions = questions_by_prompt(load_query_file(path).questions)
    data = RoutingDataset(
        ids=["a", "b"], prompts=["Which is a fruit?", "2 + 2?"], models=["x", "y"],
        scores=np.array([[1.0, 0.0], [0.0, 1.0]]), costs=None, tasks=["mmlu", "gsm8k"],
    )  # fmt: skip
    pool = {r["id"]: r for r in anchor_pool(data, questions)}
    mc = anchor_line(pool["a"])
    assert mc["answer"] == ["apple"] and mc["grader"] == "choice"
    assert mc["choices"] == ["stone", "apple"]
    assert mc["prompt"].startswith("Which is a fruit?") and "B. apple" in mc["prompt"]
    assert pool["a"]["prompt"] == "Which is a fruit?"  # the router embeds the raw query
    assert anchor_line(pool["b"])["grader"] == "numeric"
