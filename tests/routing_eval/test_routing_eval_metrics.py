"""Metrics on cases small enough to check on paper, plus properties that hold for any data.

The paper case (4 prompts; columns weak, strong; the weak model costs 1, the strong 3):

    prompt  Q weak  Q strong  predicted advantage of strong (P_strong − P_weak)
    p1      1       1          0.1
    p2      0       1          0.4
    p3      0       1          0.3
    p4      1       0         -0.2

q_weak = 0.5, q_strong = 0.75. Sending the k most-advantaged prompts (p2, p3, p1, p4) to the
strong model gives quality 0.5, 0.75, 1.0, 1.0, 0.75 → PGR 0, 1, 2, 2, 1 at shares 0, ¼, ½, ¾, 1:
APGR = ¼·(½ + 3/2 + 2 + 3/2) = 1.375; PGR reaches 0.5 at share 1/8 (CPT(50%) = 12.5%) and 0.8
at 1/5 (CPT(80%) = 20%).

With λ, the router picks strong iff advantage > 2λ: points (cost, quality) = (2.5, 1.0) at
λ = 0, (2.0, 1.0), (1.5, 0.75), (1.0, 0.5). The non-decreasing hull is (1, .5) → (2, 1), then
flat; costs run from 1 to 3, so AIQ = (0.75 + 1.0) / 2 = 0.875.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from polyroute.routing_eval import metrics

Q = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
C = np.array([[1.0, 3.0]] * 4)
ADV = np.array([0.1, 0.4, 0.3, -0.2])
P = np.column_stack([np.full(4, 0.5), 0.5 + ADV])


def test_apgr_and_cpt_on_the_paper_case() -> None:
    tm = metrics.two_model_metrics(Q, P)
    assert (tm.strong, tm.weak) == (1, 0)
    np.testing.assert_allclose(tm.strong_share, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(tm.quality, [0.5, 0.75, 1.0, 1.0, 0.75])
    np.testing.assert_allclose(tm.pgr, [0, 1, 2, 2, 1])
    assert tm.apgr == pytest.approx(1.375)
    assert tm.cpt50 == pytest.approx(12.5)
    assert tm.cpt80 == pytest.approx(20.0)


def test_a_router_that_ranks_wrong_pays_for_it() -> None:
    # Order p4, p2, p1, p3: quality 0.5, 0.25, 0.5, 0.5, 0.75 → PGR 0, −1, 0, 0, 1.
    adv = np.array([0.2, 0.3, 0.1, 0.4])
    tm = metrics.two_model_metrics(Q, np.column_stack([np.zeros(4), adv]))
    np.testing.assert_allclose(tm.pgr, [0, -1, 0, 0, 1])
    assert tm.apgr == pytest.approx(0.25 * (-0.5 - 0.5 + 0 + 0.5))  # −0.125
    assert tm.cpt50 == pytest.approx(87.5)  # between ¾ (PGR 0) and 1 (PGR 1)
    assert tm.cpt80 == pytest.approx(95.0)


def test_a_router_that_cannot_tell_prompts_apart_scores_apgr_one_half() -> None:
    # RouteLLM's random baseline: all prompts switch together, PGR rises linearly 0 → 1.
    tm = metrics.two_model_metrics(Q, np.full((4, 2), 0.3))
    np.testing.assert_allclose(tm.strong_share, [0, 1])
    assert tm.apgr == pytest.approx(0.5)
    assert tm.cpt50 == pytest.approx(50.0) and tm.cpt80 == pytest.approx(80.0)


def test_equal_models_have_no_pgr() -> None:
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    tm = metrics.two_model_metrics(q, q)
    assert tm.apgr is None and tm.cpt50 is None and tm.cpt80 is None


def test_explicit_strong_model() -> None:
    tm = metrics.two_model_metrics(Q, P, strong=0)
    assert (tm.strong, tm.weak) == (0, 1)
    assert tm.quality[0] == pytest.approx(0.75) and tm.quality[-1] == pytest.approx(0.5)


def test_router_curve_on_the_paper_case() -> None:
    curve = metrics.router_curve(Q, C, P)
    assert [(pt.cost, pt.quality) for pt in curve] == [
        (2.5, 1.0),
        (2.0, 1.0),
        (1.5, 0.75),
        (1.0, 0.5),
    ]
    assert curve[0].lam == 0.0
    assert curve[0].shares == (0.25, 0.75)
    assert curve[-1].shares == (1.0, 0.0)


def test_aiq_on_the_paper_case() -> None:
    curve = metrics.router_curve(Q, C, P)
    costs = np.array([pt.cost for pt in curve])
    quals = np.array([pt.quality for pt in curve])
    assert metrics.cost_range(C) == (1.0, 3.0)
    np.testing.assert_allclose(metrics.nondecreasing_hull(costs, quals), [[1, 0.5], [2, 1.0]])
    assert metrics.aiq(costs, quals, 1.0, 3.0) == pytest.approx(0.875)


def test_aiq_ignores_points_under_the_hull_and_after_the_peak() -> None:
    # Hull (1, .5) → (2, .9); (1.5, .6) is under it; (3, .75) is past the peak: flat at .9.
    costs = np.array([1.0, 1.5, 2.0, 3.0])
    quals = np.array([0.5, 0.6, 0.9, 0.75])
    np.testing.assert_allclose(metrics.nondecreasing_hull(costs, quals), [[1, 0.5], [2, 0.9]])
    assert metrics.aiq(costs, quals, 1.0, 3.0) == pytest.approx((0.7 + 0.9) / 2)


def test_aiq_counts_nothing_left_of_the_cheapest_point() -> None:
    # One point at cost 2 with quality 1, range [1, 3]: area 1 (from 2 to 3) over width 2.
    assert metrics.aiq(np.array([2.0]), np.array([1.0]), 1.0, 3.0) == pytest.approx(0.5)


def test_single_models_best_model_oracle_and_matching() -> None:
    costs, quals = metrics.single_model_points(Q, C)
    np.testing.assert_allclose(costs, [1, 3])
    np.testing.assert_allclose(quals, [0.5, 0.75])
    assert metrics.best_model(Q, C) == 1
    oracle = metrics.oracle_choice(Q, C)
    np.testing.assert_array_equal(oracle, [0, 1, 1, 0])  # p1: both right → the cheaper
    assert metrics.outcome(Q, C, oracle) == (2.0, 1.0)
    curve = metrics.router_curve(Q, C, P)
    assert metrics.quality_at_cost(curve, 3.0) == 1.0
    assert metrics.quality_at_cost(curve, 1.2) == 0.5
    assert metrics.quality_at_cost(curve, 0.5) is None
    assert metrics.cost_to_reach(curve, 0.75) == 1.5
    assert metrics.cost_to_reach(curve, 1.01) is None


def test_best_model_ties_go_to_the_cheaper() -> None:
    q = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert metrics.best_model(q, np.array([[3.0, 1.0], [3.0, 1.0]])) == 1


def test_cheapest_choice_breaks_cost_ties_by_prediction() -> None:
    c = np.array([[1.0, 1.0, 2.0]])
    p = np.array([[0.1, 0.5, 0.9]])
    assert metrics.cheapest_choice(p, c).tolist() == [1]


def test_bad_shapes_and_nan_are_refused() -> None:
    with pytest.raises(ValueError, match="one shape"):
        metrics.router_curve(Q, C, P[:, :1])
    with pytest.raises(ValueError, match="P has NaN"):
        metrics.router_curve(Q, C, np.full_like(P, np.nan))


_n_m = st.tuples(st.integers(1, 12), st.integers(2, 4))


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, m = draw(_n_m)
    unit = st.floats(0, 1, allow_nan=False)
    q = draw(arrays(np.float64, (n, m), elements=unit))
    p = draw(arrays(np.float64, (n, m), elements=unit))
    price = draw(arrays(np.float64, (m,), elements=st.floats(0.01, 10), unique=True))
    tokens = draw(arrays(np.float64, (n, 1), elements=st.floats(1, 1000)))
    return q, tokens * price, p


@settings(max_examples=60, deadline=None)
@given(problems())
def test_properties_of_any_problem(problem: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    q, c, p = problem
    curve = metrics.router_curve(q, c, p)
    c_min, c_max = metrics.cost_range(c)
    _, oracle_q = metrics.outcome(q, c, metrics.oracle_choice(q, c))
    _, model_q = metrics.single_model_points(q, c)
    for pt in curve:
        assert c_min - 1e-9 <= pt.cost <= c_max + 1e-9
        assert pt.quality <= oracle_q + 1e-9  # nothing beats the oracle
        assert sum(pt.shares) == pytest.approx(1.0)
    assert oracle_q >= model_q.max() - 1e-12
    assert curve[-1].cost == pytest.approx(c_min)  # λ → ∞ is the cheapest of each prompt
    costs = np.array([pt.cost for pt in curve])
    quals = np.array([pt.quality for pt in curve])
    hull = metrics.nondecreasing_hull(costs, quals)
    assert (np.diff(hull[:, 0]) > 0).all() and (np.diff(hull[:, 1]) >= -1e-12).all()
    assert min(quals) - 1e-9 <= metrics.aiq(costs, quals, c_min, c_max) <= max(quals) + 1e-9


@settings(max_examples=60, deadline=None)
@given(problems())
def test_two_model_properties(problem: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    q, _, p = problem
    q, p = q[:, :2], p[:, :2]
    tm = metrics.two_model_metrics(q, p)
    assert tm.strong_share[0] == 0 and tm.strong_share[-1] == 1
    assert tm.quality[0] == pytest.approx(tm.q_weak) and tm.quality[-1] == pytest.approx(
        tm.q_strong
    )
    if tm.apgr is not None:
        assert tm.cpt50 is not None and tm.cpt80 is not None
        assert 0 <= tm.cpt50 <= tm.cpt80 <= 100
        # Ranking by the truth itself is the best any router can do.
        best = metrics.two_model_metrics(q, q, strong=tm.strong)
        assert best.apgr is not None and best.apgr >= tm.apgr - 1e-9
