"""Onboarding against the known models' scores, and the settings ``polyroute train`` chooses
for it by simulating onboarding on its own models."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder
from tests.routers.test_router_mf import PRICES, specialist_data, topic_prompts

from polyroute.routing.persist import load_router, read_anchor_pool, save_router
from polyroute.routing.routers.mf import MFRouter
from polyroute.routing.routers.mf_newcomer import (
    OFFSET_SD_GRID,
    offset_sd_by_evidence,
    prompt_offsets,
)
from polyroute.routing_eval.dataset import RoutingDataset
from polyroute.routing_eval.onboard import add_model_from_data
from polyroute.routing_eval.onboard_tuning import (
    DEFAULT_STRENGTH,
    STRENGTHS,
    choose,
    tune_onboarding,
)
from polyroute.routing_eval.train import train_router


def test_an_offset_says_how_much_better_the_known_models_did_than_predicted() -> None:
    logits = np.zeros((3, 4))  # the router expects 50% from each of 4 models everywhere
    outcomes = np.array(
        [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, np.nan], [np.nan, np.nan, np.nan, np.nan]]
    )
    o = prompt_offsets(logits, outcomes, sd=2.0)
    assert o[0] > 0.5 and o[1] < -0.5  # easier, harder than predicted
    assert o[2] == 0.0  # no outcome: no offset
    assert abs(o[1]) < abs(o[0])  # three outcomes say less than four
    # a tighter prior allows less
    assert 0 < prompt_offsets(logits, outcomes, sd=0.5)[0] < o[0]


def test_the_offsets_sd_is_the_one_that_makes_the_known_models_scores_most_likely() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.0, (400, 6))
    explained = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(float)
    assert offset_sd_by_evidence(logits, explained) <= 0.25  # the logits say it all
    effect = rng.normal(0.0, 2.0, (400, 1))  # each prompt easier or harder for everyone
    shared = (rng.random(logits.shape) < 1 / (1 + np.exp(-(logits + effect)))).astype(float)
    sd = offset_sd_by_evidence(logits, shared)
    assert sd in OFFSET_SD_GRID and 1.0 <= sd <= 3.0
    shared[:, 3:] = np.nan  # half the scores unknown: still read off the rest
    assert 1.0 <= offset_sd_by_evidence(logits, shared) <= 3.0


def varied_data(n_per_topic: int = 40, seed: int = 0) -> RoutingDataset:
    """Five models of graded skill on three topics, binary scores drawn from it; costs
    rising with skill."""
    rng = np.random.default_rng(seed)
    skill = np.array(
        [[0.9, 0.2, 0.3], [0.3, 0.9, 0.3], [0.2, 0.3, 0.9], [0.7, 0.7, 0.5], [0.8, 0.8, 0.8]]
    )
    prompts, scores, tasks = [], [], []
    for t, topic in enumerate(("math", "code", "poem")):
        for i in range(n_per_topic):
            prompts.append(f"{topic} question number {i}")
            scores.append((rng.random(len(skill)) < skill[:, t]).astype(float))
            tasks.append(topic)
    n = len(prompts)
    return RoutingDataset(
        ids=[f"p{i}" for i in range(n)],
        prompts=prompts,
        models=["mathy", "cody", "poet", "allround", "strong"],
        scores=np.array(scores),
        costs=np.tile([1e-4, 1e-4, 1e-4, 3e-4, 1e-3], (n, 1)),
        tasks=tasks,
    )


def test_easy_anchors_do_not_pass_for_a_strong_newcomer(embedder: TopicEmbedder) -> None:
    data = specialist_data()
    router = MFRouter(hidden=16, dim=4, ensemble=2, embedder=embedder, prompt_offset_sd=2.0)
    router.fit(embedder.embed(data.prompts), data.scores, data.models, data.prompts)
    prompts = [p for i in range(4) for p in topic_prompts(500 + i)]
    x = embedder.embed(prompts)
    y = np.ones(len(prompts))  # the newcomer answers every anchor...
    everyone = {m: np.ones(len(prompts)) for m in data.models}  # ...and so did everyone
    alone = copy.deepcopy(router)
    alone.add_model("newcomer", x, y, texts=prompts)
    router.add_model("newcomer", x, y, known=everyone, texts=prompts)
    test = topic_prompts(900)
    read_alone = alone.predict(test)[:, -1]
    read_against = router.predict(test)[:, -1]
    assert (read_against < read_alone - 0.05).all()
    np.testing.assert_allclose(router.predict(test)[:, :3], alone.predict(test)[:, :3])
    with pytest.raises(ValueError, match="do not match"):
        router.add_model("other", x, y, known={"mathy": np.ones(3)}, texts=prompts)


def test_known_scores_of_unknown_models_or_with_no_offsets_change_nothing(
    embedder: TopicEmbedder,
) -> None:
    data = specialist_data()
    router = MFRouter(hidden=16, dim=4, ensemble=1, embedder=embedder, prompt_offset_sd=0.0)
    router.fit(embedder.embed(data.prompts), data.scores, data.models, data.prompts)
    t = topic_prompts(600)
    x, y = embedder.embed(t), np.array([1.0, 0.0, 1.0])
    a, b, c = (copy.deepcopy(router) for _ in range(3))
    a.add_model("new", x, y, texts=t)
    b.add_model("new", x, y, known={"mathy": np.ones(3)}, texts=t)  # offsets off
    c.prompt_offset_sd = 2.0
    c.add_model("new", x, y, known={"nobody": np.ones(3)}, texts=t)  # no peer among them
    test = topic_prompts(700)
    np.testing.assert_allclose(a.predict(test), b.predict(test))
    np.testing.assert_allclose(a.predict(test), c.predict(test))
    c.add_model("new", x, y, known={"mathy": np.ones(3)}, texts=t)  # ...and with one, it moves
    assert np.abs(c.predict(test)[:, -1] - a.predict(test)[:, -1]).max() > 1e-3


def test_the_simulation_picks_a_setting_of_its_grid_and_says_what_each_kept(
    embedder: TopicEmbedder,
) -> None:
    data = varied_data()
    x = embedder.embed(data.prompts)
    router = MFRouter(hidden=16, dim=4, ensemble=1, embedder=embedder)
    router.fit(x, data.scores, data.models, data.prompts)
    assert data.costs is not None
    rows = list(range(0, len(data), 2))  # 60 anchors, every topic
    built: list[int] = []

    def without(k: int) -> MFRouter:  # the simulated newcomer's router never saw it
        built.append(k)
        keep = [j for j in range(len(data.models)) if j != k]
        lesser = MFRouter(hidden=16, dim=4, ensemble=1, embedder=embedder)
        lesser.fit(x, data.scores[:, keep], [data.models[j] for j in keep], data.prompts)
        return lesser

    texts = data.prompts
    choice = tune_onboarding(
        router, x, data.scores, data.costs, rows, anchors=30, without=without, texts=texts
    )
    assert choice is not None
    assert built == [0, 1, 2, 3, 4]
    assert choice.prior_strength in STRENGTHS and choice.draws == 2
    assert len(choice.kept) == len(STRENGTHS)
    best = choice.kept[f"{choice.prior_strength:g}"] == max(choice.kept.values())
    assert best or choice.prior_strength == DEFAULT_STRENGTH  # the default unless clearly beaten
    assert len(set(choice.kept.values())) > 1  # the settings are told apart
    assert choice.describe()["simulated"].startswith("each of 5 training models")
    # by default it trains those routers itself, with the router's settings (two at a time),
    # and reads them as if trained one after the other
    own = tune_onboarding(router, x, data.scores, data.costs, rows, anchors=30, texts=texts)

    def in_order(k: int) -> MFRouter:
        keep = [j for j in range(len(data.models)) if j != k]
        lesser = MFRouter(**router.params())
        lesser.fit(x, data.scores[:, keep], [data.models[j] for j in keep], texts)
        return lesser

    again = tune_onboarding(
        router, x, data.scores, data.costs, rows, anchors=30, without=in_order, texts=texts
    )
    assert own is not None and again is not None and own.kept == again.kept
    with pytest.raises(ValueError, match="less that one"):
        tune_onboarding(router, x, data.scores, data.costs, rows, anchors=30,
                        without=lambda k: router, texts=texts)  # fmt: skip
    # too little to simulate with: no choice
    assert tune_onboarding(router, x, data.scores, data.costs, rows[:5], texts=texts) is None
    two = MFRouter(hidden=8, dim=2, ensemble=1, embedder=embedder)
    two.fit(x, data.scores[:, :2], data.models[:2], texts)
    assert tune_onboarding(two, x, data.scores[:, :2], data.costs[:, :2], rows, texts=texts) is None


def test_on_large_data_the_simulated_routers_train_on_a_sample_that_holds_the_anchors(
    embedder: TopicEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = varied_data()  # 120 prompts
    x = embedder.embed(data.prompts)
    router = MFRouter(hidden=16, dim=4, ensemble=1, embedder=embedder)
    router.fit(x, data.scores, data.models, data.prompts, data.tasks)
    assert data.costs is not None
    rows = list(range(0, len(data), 2))  # 60 anchors: 2 draws of 30
    seen: list[tuple[int, list[str], list[str | None]]] = []
    fit = MFRouter.fit

    def spy(self: MFRouter, x: object, scores: np.ndarray, models: list[str],
            texts: list[str], tasks: list[str | None] | None = None) -> None:  # fmt: skip
        seen.append((len(scores), list(texts), list(tasks or [])))
        fit(self, x, scores, models, texts, tasks)  # type: ignore[arg-type]

    monkeypatch.setattr(MFRouter, "fit", spy)
    args = (router, x, data.scores, data.costs, rows)
    small = tune_onboarding(*args, anchors=30, texts=data.prompts, tasks=data.tasks,
                            max_prompts=80)  # fmt: skip
    assert small is not None and small.prompts == 80
    assert "on 80 prompts" in small.describe()["simulated"]
    assert len(seen) == len(data.models)
    anchors = {data.prompts[i] for i in rows}
    for n, texts, tasks in seen:
        assert n == 80 and anchors <= set(texts)  # the anchors, and 20 others
        assert tasks == [data.tasks[data.prompts.index(t)] for t in texts]  # rows stay aligned
    seen.clear()
    full = tune_onboarding(*args, anchors=30, texts=data.prompts, tasks=data.tasks)
    assert full is not None and full.prompts == len(data)  # under the cap: all of it
    assert all(n == len(data) for n, _, _ in seen)


def test_train_chooses_the_onboarding_settings_and_the_pool_keeps_the_scores(
    embedder: TopicEmbedder, tmp_path: Path
) -> None:
    data = varied_data()
    params = {"hidden": 16, "dim": 4, "ensemble": 1}
    result = train_router(data, kind="mf", embedder=embedder, params=params)
    router = result.router
    assert isinstance(router, MFRouter)
    onboarding = result.summary["onboarding"]
    assert router.prior_strength == onboarding["prior_strength"]
    assert router.prompt_offset_sd is None  # estimated when a model is added
    row = result.anchors[0]
    i = data.ids.index(row["id"])
    assert row["scores"] == dict(zip(data.models, data.scores[i].tolist(), strict=True))
    path = save_router(router, tmp_path / "r", training=result.summary, anchors=result.anchors)
    loaded = load_router(path, embedder=embedder)
    assert isinstance(loaded, MFRouter)
    assert loaded.prompt_offset_sd == router.prompt_offset_sd
    assert read_anchor_pool(path)[0]["scores"] == row["scores"]
    # settings given are kept, not tuned
    fixed = train_router(
        data, kind="mf", embedder=embedder, params={**params, "prior_strength": 2.5}
    )
    assert isinstance(fixed.router, MFRouter) and fixed.router.prior_strength == 2.5
    assert fixed.summary["onboarding"]["simulated"].startswith("no")
    assert "onboarding" not in fixed.summary["seconds"]


def test_add_model_from_data_reads_the_pools_scores(
    embedder: TopicEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = specialist_data()
    result = train_router(
        data, kind="mf", embedder=embedder, prices=PRICES,
        params={"hidden": 16, "dim": 4, "ensemble": 1},
    )  # fmt: skip
    router = result.router
    assert isinstance(router, MFRouter)
    seen: dict[str, object] = {}
    original = MFRouter.add_model

    def spy(self: MFRouter, *args: object, **kwargs: object) -> int:
        seen.update(kwargs)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MFRouter, "add_model", spy)
    pool = result.anchors[:6]
    new = RoutingDataset(
        ids=[r["id"] for r in pool] + ["elsewhere"],
        prompts=[r["prompt"] for r in pool] + ["math question number 999"],
        models=["newcomer"],
        scores=np.ones((7, 1)),
        costs=None,
        tasks=[None] * 7,
    )
    added = add_model_from_data(router, new, "newcomer", pool=pool)
    assert added.anchors == 6 and added.prompts == 7
    known = seen["known"]
    assert isinstance(known, dict) and set(known) == set(data.models)
    mathy = known["mathy"]
    assert np.isnan(mathy[-1])  # not a pool prompt: no known score
    np.testing.assert_allclose(mathy[:-1], [r["scores"]["mathy"] for r in pool])


def test_a_router_saved_before_offsets_loads_and_adds_models_as_before(
    embedder: TopicEmbedder, tmp_path: Path
) -> None:
    data = specialist_data(10)
    router = MFRouter(hidden=8, dim=3, ensemble=1, embedder=embedder)
    router.fit(embedder.embed(data.prompts), data.scores, data.models, data.prompts)
    path = save_router(router, tmp_path / "old")
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["params"]["prompt_offset_sd"]  # what an older polyroute wrote
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_router(path, embedder=embedder)
    assert isinstance(loaded, MFRouter)
    t = topic_prompts(800)
    x = embedder.embed(t)
    loaded.add_model("newcomer", x, np.array([1.0, 1.0, 0.0]), texts=t)  # no pool: no offsets
    router.add_model("newcomer", x, np.array([1.0, 1.0, 0.0]), texts=t)
    np.testing.assert_allclose(
        loaded.predict_embeddings(x, t), router.predict_embeddings(x, t), atol=1e-6
    )


def test_the_default_strength_stays_unless_another_beats_it_by_more_than_its_noise() -> None:
    default = STRENGTHS.index(DEFAULT_STRENGTH)
    other = STRENGTHS.index(1.0)
    rng = np.random.default_rng(0)
    per_model = np.full((8, len(STRENGTHS)), 0.8)
    # strength 1 ahead by 0.02 on every simulated model: clearly better
    clear = per_model.copy()
    clear[:, other] += 0.02 + rng.normal(0, 0.002, 8)
    assert choose(clear) == 1.0
    # ahead by 0.02 on average, from one model's +0.3 and small losses elsewhere: noise
    noisy = per_model.copy()
    noisy[:, other] += np.array([0.3, -0.02, -0.02, -0.02, -0.02, -0.02, -0.02, -0.02])
    assert noisy.mean(axis=0).argmax() == other
    assert choose(noisy) == DEFAULT_STRENGTH
    # the default best on average: kept
    per_model[:, default] += 0.01
    assert choose(per_model) == DEFAULT_STRENGTH
    # one simulated model: no spread to judge by, the best is kept
    assert choose(clear[:1]) == 1.0
