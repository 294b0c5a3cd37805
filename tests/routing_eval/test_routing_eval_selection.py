"""``polyroute train`` chooses its router's settings by out-of-fold log-loss on the data."""

from __future__ import annotations

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder
from tests.routers.test_router_onboard_tuning import varied_data

from polyroute.routing.routers.mf import MFRouter
from polyroute.routing_eval.selection import (
    CANDIDATES,
    Candidate,
    masked_log_loss,
    merged,
    select_settings,
)
from polyroute.routing_eval.train import train_router

SMALL = {"hidden": 16, "dim": 4, "ensemble": 1}
#: A weight decay that pins every weight near 0: the router can only learn each model's mean.
CRUSHED = Candidate("crushed", {**SMALL, "weight_decay": 30.0})
FITS = Candidate("fits", SMALL)


@pytest.fixture
def embedder() -> TopicEmbedder:
    return TopicEmbedder()


def test_the_log_loss_counts_known_scores_only_and_fractions_as_they_are() -> None:
    scores = np.array([[1.0, np.nan], [0.0, 0.25]])
    assert masked_log_loss(scores, np.array([[0.9, 0.0], [0.1, 0.25]])) == pytest.approx(
        (-np.log(0.9) - np.log(0.9) - (0.25 * np.log(0.25) + 0.75 * np.log(0.75))) / 3
    )
    # a fractional score is best predicted by itself
    at = [masked_log_loss(np.array([[0.3]]), np.array([[p]])) for p in (0.2, 0.3, 0.4)]
    assert at[1] < at[0] and at[1] < at[2]
    with pytest.raises(ValueError, match="no known score"):
        masked_log_loss(np.full((2, 2), np.nan), np.zeros((2, 2)))


def test_the_lowest_out_of_fold_loss_wins_and_the_first_wins_a_tie() -> None:
    data = varied_data()
    truth = np.nan_to_num(data.scores)
    predictions = {"a": np.full(truth.shape, 0.5), "b": 0.1 + 0.8 * truth, "c": 0.1 + 0.8 * truth}
    chosen = select_settings(
        [Candidate(k, {"key": k}) for k in predictions],
        lambda params: predictions[params["key"]],
        data,
    )
    assert chosen.chosen.label == "b"
    assert chosen.predicted is predictions["b"]
    assert chosen.scores["a"] > chosen.scores["b"] == chosen.scores["c"]
    described = chosen.describe()
    assert described["chosen"] == "b" and described["candidates"]["a"]["params"] == {"key": "a"}
    with pytest.raises(ValueError, match="no candidate"):
        select_settings([], lambda params: truth, data)


def test_train_picks_the_candidate_that_learns_and_records_the_choice(
    embedder: TopicEmbedder,
) -> None:
    data = varied_data()
    result = train_router(data, embedder=embedder, candidates=[CRUSHED, FITS])
    router = result.router
    assert isinstance(router, MFRouter)
    selection = result.summary["selection"]
    assert selection["chosen"] == "fits"
    losses = {k: v["log_loss"] for k, v in selection["candidates"].items()}
    assert losses["crushed"] > losses["fits"] + 0.02
    # the chosen candidate's params are the router's
    assert (router.hidden, router.dim, router.ensemble, router.weight_decay) == (16, 4, 1, 1e-4)
    # its out-of-fold predictions calibrate the knob, and onboarding is tuned on it
    assert router.calibration_set is not None
    assert masked_log_loss(data.scores, router.calibration_set.predicted) == pytest.approx(
        losses["fits"], abs=1e-5
    )
    assert "onboarding" in result.summary


def test_a_named_kind_explicit_params_or_no_select_skip_the_choice(
    embedder: TopicEmbedder,
) -> None:
    data = varied_data()
    named = train_router(data, kind="mf", embedder=embedder, params=SMALL)
    assert "selection" not in named.summary
    off = train_router(data, embedder=embedder, params=SMALL, select=False)
    assert "selection" not in off.summary
    assert isinstance(off.router, MFRouter) and off.router.hidden == 16
    # params fixed over every candidate: what they set is not chosen
    fixed = train_router(
        data, embedder=embedder, params={"weight_decay": 1e-4}, candidates=[CRUSHED, FITS]
    )
    assert "selection" not in fixed.summary  # both became the same setting
    assert isinstance(fixed.router, MFRouter) and fixed.router.weight_decay == 1e-4


def test_merging_params_drops_the_candidates_they_make_equal() -> None:
    candidates = [Candidate("a", {"weight_decay": 1e-4}), Candidate("b", {"weight_decay": 1e-2})]
    assert [c.params for c in merged(candidates, None)] == [c.params for c in candidates]
    out = merged(candidates, {"weight_decay": 1e-3, "dim": 8})
    assert [(c.label, c.params) for c in out] == [("a", {"weight_decay": 1e-3, "dim": 8})]
    assert CANDIDATES[0].params == {}  # the router's defaults come first and win ties


def test_two_models_train_with_the_choice_and_without_onboarding_tuning(
    embedder: TopicEmbedder,
) -> None:
    data = varied_data().subset_models(["mathy", "strong"])
    result = train_router(data, embedder=embedder, candidates=[CRUSHED, FITS])
    assert result.summary["selection"]["chosen"] == "fits"
    assert result.router.models == ["mathy", "strong"]
    assert "onboarding" not in result.summary  # nothing to simulate with two models
    assert result.router.calibration is not None
