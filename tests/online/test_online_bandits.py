"""UCB1 and Thompson sampling on synthetic Bernoulli problems: explore, then exploit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from tests.online.online_sim import REQUEST, bernoulli, candidates, run, shares

from polyroute.routing.online import OnlineRouter, ThompsonRouter, UCB1Router

ARMS = ["a", "b", "c", "d", "e"]


def quality(best: str) -> dict[str, float]:
    """Every arm at 0.3–0.5 except ``best`` at 0.8."""
    others = iter([0.3, 0.4, 0.45, 0.5])
    return {m: 0.8 if m == best else next(others) for m in ARMS}


def test_ucb1_tries_every_arm_once_before_repeating_any() -> None:
    router = UCB1Router()
    # The first arm always pays 1, the others 0: a greedy router would never leave it.
    chosen = run(router, candidates(ARMS), lambda m, _c: float(m == "a"), steps=len(ARMS))
    assert sorted(chosen) == ARMS


def test_ucb1_explores_the_cheapest_untried_arm_first() -> None:
    cands = [*candidates(["dear"], price=5.0), *candidates(["cheap"], price=1.0)]
    decision = UCB1Router().route(REQUEST, cands)
    assert decision.model == "cheap"
    assert "exploring" in decision.reason
    assert decision.scores == {}  # no index is reported for untried arms (it is +inf)


@pytest.mark.parametrize("best", ["a", "c", "e"])
@pytest.mark.parametrize(
    "make", [lambda: UCB1Router(), lambda: ThompsonRouter(seed=7)], ids=["ucb1", "thompson"]
)
def test_converges_to_the_best_arm(make: Callable[[], OnlineRouter], best: str) -> None:
    router = make()
    rng = np.random.default_rng(42)
    chosen = run(router, candidates(ARMS), bernoulli(quality(best), rng), steps=3000)
    # Every arm was tried early on ...
    assert set(chosen[:100]) == set(ARMS)
    # ... and late on the best one is chosen almost always (random would give 20%).
    late = shares(chosen[-1000:])
    assert late.get(best, 0.0) > 0.85, late
    assert all(share < 0.1 for m, share in late.items() if m != best), late


def test_thompson_treats_fractional_rewards_as_bernoulli_trials() -> None:
    router = ThompsonRouter(seed=3)
    graded = {"a": 0.55, "b": 0.7, "c": 0.4}  # deterministic partial credit (F1-like)
    chosen = run(router, candidates(list(graded)), lambda m, _c: graded[m], steps=2000)
    assert shares(chosen[-500:]).get("b", 0.0) > 0.8
    state = router.state_dict()["arms"]
    # Each feedback is one trial: counts are integers that add up to the plays.
    assert sum(a["successes"] + a["failures"] for a in state.values()) == 2000
    b = state["b"]
    assert abs(b["successes"] / (b["successes"] + b["failures"]) - 0.7) < 0.05


def test_thompson_is_reproducible_from_its_seed() -> None:
    def chosen(seed: int) -> list[str]:
        rng = np.random.default_rng(0)
        return run(ThompsonRouter(seed=seed), candidates(ARMS), bernoulli(quality("b"), rng), 300)

    assert chosen(1) == chosen(1)
    assert chosen(1) != chosen(2)


@pytest.mark.parametrize("reward", [-0.1, 1.5, float("nan"), float("inf")])
def test_rewards_outside_0_1_are_refused(reward: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        UCB1Router().update("a", reward)


def test_ucb1_index_is_mean_plus_bonus() -> None:
    router = UCB1Router(exploration=0.5)
    for model, rewards in {"a": [1, 0, 1, 1], "b": [0, 1]}.items():
        for r in rewards:
            router.update(model, r)
    decision = router.route(REQUEST, candidates(["a", "b"]))
    bonus = [0.5 * np.sqrt(2 * np.log(6) / n) for n in (4, 2)]
    assert decision.scores == pytest.approx({"a": 0.75 + bonus[0], "b": 0.5 + bonus[1]})
    assert decision.model == "a" and "estimate 0.750 from 4 feedback" in decision.reason
