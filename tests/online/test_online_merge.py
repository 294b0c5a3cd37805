"""Several gateway processes teach the same online routers: their learning adds up.

Each process keeps what it learned since its last sync and adds it to the saved state (one
locked transaction), so two processes' feedback both count, exactly once, and each ends up
with the other's learning too. Here two OnlineLearning objects on one SQLite file stand for
two workers (the real two-worker gateway is in tests/gateway/test_gateway_workers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.online.online_sim import unit_vectors

from polyroute.gateway.learning import OnlineLearning
from polyroute.routing.online import LinUCBRouter, OnlineRouter, ThompsonRouter, UCB1Router
from polyroute.store import Store

MAKERS: dict[str, Callable[[], OnlineRouter]] = {
    "ucb1": lambda: UCB1Router("bandit"),
    "thompson": lambda: ThompsonRouter("bandit", seed=3),
    "linucb": lambda: LinUCBRouter("bandit", input_dim=8, dim=None),
}
ARMS = ["a", "b", "c"]


def feedback(seed: int, n: int) -> list[tuple[str, float, np.ndarray]]:
    rng = np.random.default_rng(seed)
    contexts = unit_vectors(rng, n, 8)
    return [(ARMS[int(rng.integers(3))], float(rng.random() < 0.6), contexts[i]) for i in range(n)]


def teach(router: OnlineRouter, items: list[tuple[str, float, np.ndarray]]) -> None:
    for model, reward, ctx in items:
        router.update(model, reward, ctx)


def counts(state: dict[str, Any]) -> dict[str, Any]:
    """The additive statistics of a state (the generator's state aside)."""
    arms = state["arms"]
    return {m: {k: v for k, v in a.items() if k not in ("A", "b")} for m, a in arms.items()}


def learning(url: str, router: OnlineRouter) -> OnlineLearning:
    online = OnlineLearning({"bandit": router}, Store(url), save_interval_s=3600)
    online.store.migrate()
    online.load()
    return online


@pytest.mark.parametrize("kind", list(MAKERS))
def test_two_processes_feedback_both_count_once(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    one, two, alone = MAKERS[kind](), MAKERS[kind](), MAKERS[kind]()
    first, second = learning(url, one), learning(url, two)
    fa, fb, fc = feedback(1, 40), feedback(2, 25), feedback(3, 10)

    async def run() -> None:
        teach(one, fa)
        first._dirty.add("bandit")
        teach(two, fb)
        second._dirty.add("bandit")
        await first.save()
        await second.save()  # adds its 25 to the 40 saved: overwrote them before
        teach(one, fc)
        first._dirty.add("bandit")
        await first.save()
        await second.save()  # nothing new here: it takes the sum, the first's 10 included

    asyncio.run(run())
    teach(alone, fa + fb + fc)
    saved = Store(url).load_router_states()["bandit"][1]
    expected = alone.state_dict()
    assert counts(saved) == counts(expected)
    assert counts(one.state_dict()) == counts(expected)
    assert counts(two.state_dict()) == counts(expected)
    assert sum(a.get("n", a.get("successes", 0) + a.get("failures", 0))
               for a in saved["arms"].values()) == 75  # fmt: skip
    if kind == "linucb":
        for model, arm in expected["arms"].items():
            np.testing.assert_allclose(saved["arms"][model]["A"], arm["A"], rtol=1e-12)
            np.testing.assert_allclose(saved["arms"][model]["b"], arm["b"], atol=1e-12)
    assert second.reloads >= 1


@pytest.mark.parametrize("kind", list(MAKERS))
def test_rebase_keeps_what_was_learned_after_the_snapshot(kind: str) -> None:
    router, other = MAKERS[kind](), MAKERS[kind]()
    teach(router, feedback(4, 12))
    taken = router.state_dict()
    teach(router, feedback(5, 7))  # learned while the sync was in the database
    teach(other, feedback(6, 30))
    merged = other.shifted(other.state_dict(), taken, MAKERS[kind]().state_dict())
    router.rebase(merged, taken)
    alone = MAKERS[kind]()
    teach(alone, feedback(4, 12) + feedback(5, 7) + feedback(6, 30))
    assert counts(router.state_dict()) == counts(alone.state_dict())


def test_a_state_of_another_kind_cannot_be_added() -> None:
    ucb, thompson = UCB1Router("bandit"), ThompsonRouter("bandit")
    with pytest.raises(ValueError, match="cannot add"):
        ucb.shifted(thompson.state_dict(), ucb.state_dict(), ucb.state_dict())


def test_linucb_states_of_other_settings_cannot_be_added() -> None:
    small, wide = LinUCBRouter(input_dim=8, dim=None), LinUCBRouter(input_dim=8, dim=None, ridge=1)
    with pytest.raises(ValueError, match="other settings"):
        small.shifted(wide.state_dict(), small.state_dict(), small.state_dict())
