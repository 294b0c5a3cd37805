"""The cost/quality knob: every online router maximises its index − λ·cost."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from tests.online.online_sim import REQUEST, run, shares

from polyroute.errors import UnknownPrice
from polyroute.routing.base import Candidate, RouteRequest
from polyroute.routing.online import (
    LinUCBRouter,
    OnlineRouter,
    ThompsonRouter,
    UCB1Router,
    candidate_cost,
)

MAKERS: dict[str, Callable[[float], OnlineRouter]] = {
    "ucb1": lambda lam: UCB1Router(lam=lam),
    "thompson": lambda lam: ThompsonRouter(lam=lam, seed=5),
    "linucb": lambda lam: LinUCBRouter(lam=lam, input_dim=2, dim=None),
}
CONTEXT = np.array([0.6, 0.8])
# With REQUEST's 1000 + 1000 tokens: "dear" costs $0.02 a request, "cheap" $0.002.
PAIR = [Candidate("dear", 10.0, 10.0), Candidate("cheap", 1.0, 1.0)]
QUALITY = {"dear": 0.8, "cheap": 0.7}


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize(("lam", "winner"), [(0.0, "dear"), (20.0, "cheap")])
def test_lambda_trades_a_small_quality_gap_for_cost(kind: str, lam: float, winner: str) -> None:
    # λ = 20 prices the $0.018 difference at 0.36 quality points: more than the 0.1 gap.
    router = MAKERS[kind](lam)
    chosen = run(router, PAIR, lambda m, _c: QUALITY[m], steps=1500, contexts=lambda _t: CONTEXT)
    # UCB1 keeps exploring the 0.1-worse arm for a while: 0.8, where a coin flip gives 0.5.
    assert shares(chosen[-500:]).get(winner, 0.0) > 0.8


def test_decision_carries_index_costs_fallbacks_and_reason() -> None:
    router = UCB1Router(lam=20.0)
    for model, reward in [("dear", 0.8), ("cheap", 0.7), ("third", 0.1)]:
        router.update(model, reward)
    cands = [*PAIR, Candidate("third", 1.0, 1.0)]
    d = router.route(REQUEST, cands)
    assert d.router == "ucb1"
    assert d.model == "cheap"
    assert d.costs == pytest.approx({"dear": 0.02, "cheap": 0.002, "third": 0.002})
    assert set(d.scores) == {"dear", "cheap", "third"}
    # Fallbacks follow utility: dear's 0.8 − 0.4 beats third's 0.1 − 0.04.
    assert d.fallbacks == ("dear", "third")
    assert d.reason.startswith("ucb1: cheap has the best UCB − 20×$0.002")


def test_candidate_cost_is_tokens_times_price_per_million() -> None:
    req = RouteRequest(prompt="p", input_tokens=2000, output_tokens=500)
    assert candidate_cost(Candidate("m", 1.0, 4.0), req) == pytest.approx(0.004)
    assert candidate_cost(Candidate("m", None, 4.0), req) is None


def test_unpriced_candidates_are_skipped_when_cost_matters_never_costed_at_zero() -> None:
    cands = [Candidate("priced", 1.0, 1.0), Candidate("mystery")]
    d = UCB1Router(lam=1.0).route(REQUEST, cands)
    assert (d.model, d.fallbacks) == ("priced", ())
    assert d.reason.endswith("skipped for want of a price: mystery")
    with pytest.raises(UnknownPrice, match="no eligible model has a price: mystery"):
        UCB1Router(lam=1.0).route(REQUEST, [Candidate("mystery")])
    # With λ = 0 cost does not matter: it competes, loses ties, and no cost is made up for it.
    d = UCB1Router().route(REQUEST, cands)
    assert (d.model, d.fallbacks) == ("priced", ("mystery",))
    assert "mystery" not in d.costs


@pytest.mark.parametrize("lam", [-1.0, float("nan"), float("inf")])
def test_lambda_must_be_finite_and_not_negative(lam: float) -> None:
    with pytest.raises(ValueError, match="lam"):
        UCB1Router(lam=lam)
