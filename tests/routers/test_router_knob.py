"""The knob: λ directly, or calibrated to a cost or quality target."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from polyroute.routing.knob import Calibration, Knob, calibrate, lambda_candidates, sweep

MODELS = ["cheap", "strong"]
# Four prompts. 'strong' (cost 10) answers all; 'cheap' (cost 1) only the first two.
SCORES = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
COSTS = np.tile([1.0, 10.0], (4, 1))
# The router is sure of 'strong', and less and less of 'cheap': going strong gains
# 0.1, 0.2, 0.7, 0.9 predicted quality for 9 more cost, so prompt i goes strong while λ < gap/9.
PREDICTED = np.array([[0.9, 1.0], [0.8, 1.0], [0.3, 1.0], [0.1, 1.0]])


def cal(knob: Knob) -> Calibration:
    return calibrate(knob, PREDICTED, COSTS, SCORES, MODELS)


def test_reference_is_the_strongest_model() -> None:
    c = cal(Knob())
    assert (c.reference_model, c.reference_quality, c.reference_cost) == ("strong", 1.0, 10.0)
    assert (c.lam, c.quality, c.cost) == (0.0, 1.0, 10.0)  # λ = 0: always 'strong'


def test_cost_target_spends_the_budget_on_the_prompts_that_need_it() -> None:
    c = cal(Knob(max_cost_fraction=0.55))
    # Two prompts to strong: cost (1 + 1 + 10 + 10) / 4 = 5.5, and nothing is lost.
    assert c.cost == pytest.approx(5.5)
    assert c.quality == 1.0
    assert c.met
    assert 0.2 / 9 <= c.lam < 0.7 / 9


def test_quality_target_takes_the_cheapest_lambda_that_meets_it() -> None:
    full = cal(Knob(min_quality_fraction=1.0))
    assert (full.quality, full.cost, full.met) == (1.0, pytest.approx(5.5), True)
    three_quarters = cal(Knob(min_quality_fraction=0.75))
    assert three_quarters.quality == 0.75
    assert three_quarters.cost == pytest.approx(3.25)  # only the last prompt goes strong
    assert 0.7 / 9 <= three_quarters.lam < 0.9 / 9


def test_unreachable_targets_say_so_and_use_the_closest_lambda() -> None:
    too_cheap = cal(Knob(max_cost_fraction=0.05))  # below the cheapest model
    assert not too_cheap.met and too_cheap.cost == 1.0
    too_good = cal(Knob(min_quality_fraction=1.2))
    assert not too_good.met and too_good.quality == 1.0
    assert "not reachable" in too_good.describe()


def test_a_direct_lambda_is_kept_and_evaluated() -> None:
    c = cal(Knob(lam=0.05))  # 0.45 / 9: the two doubtful prompts go strong
    assert (c.lam, c.quality, c.cost) == (0.05, 1.0, pytest.approx(5.5))


def test_unknown_scores_are_left_out_of_averages() -> None:
    scores = SCORES.copy()
    scores[0, 1] = np.nan
    c = calibrate(Knob(), PREDICTED, COSTS, scores, MODELS)
    assert c.reference_quality == 1.0  # mean of the three known
    assert c.quality == 1.0


def test_knob_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="one of"):
        Knob(lam=1.0, max_cost_fraction=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        Knob(lam=-1.0)
    with pytest.raises(ValueError, match="> 0"):
        Knob(min_quality_fraction=0.0)
    knob = Knob(max_cost_fraction=0.3)
    assert Knob.from_dict(knob.to_dict()) == knob
    assert "30%" in knob.describe()
    c = cal(Knob(max_cost_fraction=0.55))
    assert Calibration.from_dict(c.to_dict()) == c


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="shape"):
        calibrate(Knob(), PREDICTED, COSTS[:3], SCORES, MODELS)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (12, 3), elements=st.floats(0, 1)),
    arrays(np.float64, (12, 3), elements=st.floats(1e-6, 1e-2)),
)
def test_average_cost_never_rises_with_lambda(predicted: np.ndarray, costs: np.ndarray) -> None:
    lams = lambda_candidates(costs, predicted)
    _, cost = sweep(predicted, costs, np.zeros_like(predicted), lams)
    assert np.all(np.diff(cost) <= 1e-12)
    # at the top of the grid every prompt goes to its cheapest model
    assert cost[-1] == pytest.approx(costs.min(axis=1).mean())
