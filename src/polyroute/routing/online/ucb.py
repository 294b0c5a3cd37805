"""UCB1 over the ensemble (Auer, Cesa-Bianchi & Fischer 2002), with the cost term.

Each model's index is its mean feedback plus an exploration bonus::

    UCB(a) = mean(a) + c · sqrt(2 · ln N / n(a))       N = feedback over the candidates

and the router picks the model maximising ``UCB(a) − λ·cost(a)``. A model with no feedback
yet has an infinite index: every candidate is tried once before any is preferred (the
cheapest of the untried first). ``c = 1`` is textbook UCB1; smaller explores less.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from polyroute.routing.online.base import ArmScores, OnlineRouter, shift_counts
from polyroute.routing.options import Ucb1Options
from polyroute.routing.registry import ROUTERS


@ROUTERS.register("ucb1")
class UCB1Router(OnlineRouter):
    """Upper confidence bound per model; context-free (one mean per model)."""

    kind: ClassVar[str] = "ucb1"
    Options = Ucb1Options
    index_name: ClassVar[str] = "UCB"

    def __init__(self, name: str = "ucb1", *, lam: float = 0.0, exploration: float = 1.0) -> None:
        super().__init__(name, lam=lam)
        if not (math.isfinite(exploration) and exploration >= 0):
            raise ValueError(f"exploration must be a finite number >= 0, got {exploration!r}")
        self.exploration = float(exploration)
        #: model → [feedback count, sum of rewards]
        self._arms: dict[str, list[float]] = {}

    def _scores(self, names: Sequence[str], features: Any) -> ArmScores:
        plays = [int(self._arms.get(n, (0, 0.0))[0]) for n in names]
        sums = np.array([self._arms.get(n, (0, 0.0))[1] for n in names])
        n = np.array(plays, dtype=np.float64)
        total = max(1.0, float(n.sum()))
        played = n > 0
        mean = np.divide(sums, n, out=np.zeros_like(sums), where=played)
        safe_n = np.where(played, n, 1.0)
        bonus = self.exploration * np.sqrt(2.0 * math.log(total) / safe_n)
        index = np.where(played, mean + bonus, np.inf)
        return ArmScores(index=index, estimate=mean, plays=plays)

    def _update(self, model: str, reward: float, features: Any) -> None:
        arm = self._arms.setdefault(model, [0, 0.0])
        arm[0] += 1
        arm[1] += reward

    def _state(self) -> dict[str, Any]:
        return {"arms": {m: {"n": int(a[0]), "sum": a[1]} for m, a in self._arms.items()}}

    def _shift(
        self, base: Mapping[str, Any], plus: Mapping[str, Any], minus: Mapping[str, Any]
    ) -> dict[str, Any]:
        arms = shift_counts(base, plus, minus, ("n", "sum"))
        for arm in arms.values():
            arm["n"] = int(arm["n"])
            arm["sum"] = min(max(float(arm["sum"]), 0.0), arm["n"])  # rounding, not learning
        return {"arms": arms}

    def _load(self, state: Mapping[str, Any]) -> None:
        arms: dict[str, list[float]] = {}
        for model, arm in _mapping(state.get("arms"), "arms").items():
            n, total = arm.get("n"), arm.get("sum")
            if not isinstance(n, int) or n < 0 or not isinstance(total, int | float):
                raise ValueError(f"arms[{model!r}] needs an integer n >= 0 and a number sum")
            if not 0 <= total <= n:
                raise ValueError(f"arms[{model!r}]: sum {total} is not within [0, n={n}]")
            arms[model] = [n, float(total)]
        self._arms = arms


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ValueError(f"state {what!r} must be an object of objects")
    return value
