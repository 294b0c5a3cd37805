"""Thompson sampling over the ensemble: a Beta posterior per model (Beta–Bernoulli).

Each model's quality is a coin with unknown bias and a uniform Beta(1, 1) prior. To route,
draw one bias from every candidate's posterior and pick the model maximising
``draw − λ·cost``: a model is chosen as often as it is plausibly the best, so exploration
fades by itself as the posteriors narrow.

A 0/1 reward counts as a success or a failure. A fractional reward r (an F1 score, a
judge's 0.7) is turned into one Bernoulli trial that succeeds with probability r (Agrawal &
Goyal 2012), which keeps the posterior a Beta and the regret guarantees of the 0/1 case.

The random generator is seeded and its state is part of :meth:`state_dict`, so a restored
router draws what the original would have drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from polyroute.routing.online.base import ArmScores, OnlineRouter, shift_counts
from polyroute.routing.options import ThompsonOptions
from polyroute.routing.registry import ROUTERS


@ROUTERS.register("thompson")
class ThompsonRouter(OnlineRouter):
    """Beta–Bernoulli Thompson sampling per model; context-free."""

    kind: ClassVar[str] = "thompson"
    Options = ThompsonOptions
    index_name: ClassVar[str] = "sampled quality"

    def __init__(
        self, name: str = "thompson", *, lam: float = 0.0, seed: int | None = None
    ) -> None:
        super().__init__(name, lam=lam)
        self._rng = np.random.default_rng(seed)
        #: model → [successes, failures]
        self._arms: dict[str, list[int]] = {}
        #: model → pseudo-counts (successes, failures) added to the uniform prior: what is
        #: believed before any feedback (configuration, not learned state).
        self.prior: dict[str, tuple[float, float]] = {}

    def set_prior(self, model: str, mean: float, strength: float = 4.0) -> None:
        """Start ``model`` from a prior quality ``mean`` worth ``strength`` feedback scores."""
        if not (0.0 <= mean <= 1.0 and strength >= 0):
            raise ValueError("a prior needs a mean in [0, 1] and a strength >= 0")
        self.prior[model] = (mean * strength, (1.0 - mean) * strength)

    def _scores(self, names: Sequence[str], features: Any) -> ArmScores:
        wins = np.array([self._arms.get(n, (0, 0))[0] for n in names], dtype=np.float64)
        losses = np.array([self._arms.get(n, (0, 0))[1] for n in names], dtype=np.float64)
        prior = np.array([self.prior.get(n, (0.0, 0.0)) for n in names], dtype=np.float64)
        alpha, beta = 1.0 + prior[:, 0] + wins, 1.0 + prior[:, 1] + losses
        draws = self._rng.beta(alpha, beta)
        mean = alpha / (alpha + beta)
        plays = [int(w + f) for w, f in zip(wins, losses, strict=True)]
        return ArmScores(index=np.asarray(draws, dtype=np.float64), estimate=mean, plays=plays)

    def _update(self, model: str, reward: float, features: Any) -> None:
        arm = self._arms.setdefault(model, [0, 0])
        # Draw only for fractional rewards: 0/1 feedback leaves the generator untouched.
        success = reward == 1.0 or (0.0 < reward < 1.0 and self._rng.random() < reward)
        arm[0 if success else 1] += 1

    def _state(self) -> dict[str, Any]:
        bits = self._rng.bit_generator.state
        # PCG64's 128-bit integers as strings: JSON readers outside Python may round them.
        rng = {
            "bit_generator": bits["bit_generator"],
            "state": {k: str(v) for k, v in bits["state"].items()},
            "has_uint32": bits["has_uint32"],
            "uinteger": str(bits["uinteger"]),
        }
        arms = {m: {"successes": a[0], "failures": a[1]} for m, a in self._arms.items()}
        return {"arms": arms, "rng": rng}

    def _shift(
        self, base: Mapping[str, Any], plus: Mapping[str, Any], minus: Mapping[str, Any]
    ) -> dict[str, Any]:
        arms = shift_counts(base, plus, minus, ("successes", "failures"))
        # The generator is this process's own: it keeps drawing where it was.
        return {"arms": {m: {k: int(v) for k, v in a.items()} for m, a in arms.items()},
                "rng": plus.get("rng")}  # fmt: skip

    def _load(self, state: Mapping[str, Any]) -> None:
        raw = state.get("arms")
        if not isinstance(raw, Mapping):
            raise ValueError("state 'arms' must be an object")
        arms: dict[str, list[int]] = {}
        for model, arm in raw.items():
            wins = arm.get("successes") if isinstance(arm, Mapping) else None
            losses = arm.get("failures") if isinstance(arm, Mapping) else None
            if not (isinstance(wins, int) and isinstance(losses, int) and min(wins, losses) >= 0):
                raise ValueError(f"arms[{model!r}] needs integer successes and failures >= 0")
            arms[model] = [wins, losses]
        rng = np.random.default_rng()
        if state.get("rng") is not None:
            try:
                saved = state["rng"]
                rng.bit_generator.state = {
                    "bit_generator": saved["bit_generator"],
                    "state": {k: int(v) for k, v in saved["state"].items()},
                    "has_uint32": int(saved["has_uint32"]),
                    "uinteger": int(saved["uinteger"]),
                }
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ValueError(f"state 'rng' is not a saved PCG64 state ({e})") from None
        self._rng = rng
        self._arms = arms
