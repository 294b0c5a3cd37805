"""The cost/quality knob of the learned routers: λ set directly, or calibrated to a target.

A learned router picks, per prompt, the candidate maximising predicted quality − λ·cost
(:func:`polyroute.routing.tradeoff.select`). λ is in quality points per USD of one request,
a unit nobody has a feel for, so a user may name a target instead:

- ``max_cost_fraction=f``: spend on average at most ``f`` × the strongest model's average
  cost (the strongest model: the best average true quality on the calibration data);
- ``min_quality_fraction=g``: keep on average at least ``g`` × its average quality.

:func:`calibrate` turns the target into λ on calibration data (predicted quality, costs and
true scores of prompts the router did not learn from), as RouteLLM calibrates its threshold
on a sample of prompts. The average cost of the routed prompts can only fall as λ grows, so
the cost target takes the smallest λ that meets it (the most quality for that budget); the
quality target takes the largest λ whose routed quality still meets it (the least cost).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from polyroute.routing.tradeoff import FloatArray, select

#: λ values tried: 0 and a geometric grid fine enough (2.7 % steps) that the step between
#: two neighbours moves the averages far less than the calibration set's own noise.
GRID_POINTS = 512


@dataclass(frozen=True, slots=True)
class Knob:
    """What the user asked for: at most one of λ or a target (none: λ = 0, quality only)."""

    lam: float | None = None
    max_cost_fraction: float | None = None
    min_quality_fraction: float | None = None

    def __post_init__(self) -> None:
        given = [
            v
            for v in (self.lam, self.max_cost_fraction, self.min_quality_fraction)
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError("set one of lambda, max_cost_fraction or min_quality_fraction")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lambda must be a finite number >= 0, got {self.lam}")
        for name, value in (
            ("max_cost_fraction", self.max_cost_fraction),
            ("min_quality_fraction", self.min_quality_fraction),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value}")

    @property
    def needs_calibration(self) -> bool:
        return self.max_cost_fraction is not None or self.min_quality_fraction is not None

    def describe(self) -> str:
        if self.max_cost_fraction is not None:
            return f"cost ≤ {self.max_cost_fraction:.0%} of the strongest model's"
        if self.min_quality_fraction is not None:
            return f"quality ≥ {self.min_quality_fraction:.0%} of the strongest model's"
        return f"λ = {self.lam or 0.0:g}"

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Knob:
        unknown = set(data) - {"lam", "max_cost_fraction", "min_quality_fraction"}
        if unknown:
            raise ValueError(f"unknown knob field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass(frozen=True, slots=True)
class Calibration:
    """The λ in use and what it gave on the calibration data."""

    lam: float
    knob: Knob
    #: The strongest model on the calibration data, and its average quality and cost.
    reference_model: str
    reference_quality: float
    reference_cost: float
    #: Average true quality and cost of routing the calibration prompts with ``lam``.
    quality: float
    cost: float
    #: False when no λ reaches the target (the closest one is used).
    met: bool
    n_prompts: int

    def describe(self) -> str:
        met = "" if self.met else " (target not reachable; closest λ used)"
        return (
            f"λ = {self.lam:.4g} for {self.knob.describe()}{met}: on {self.n_prompts} "
            f"calibration prompts, quality {self.quality:.3f} at a cost of {self.cost:.3g} a "
            f"prompt vs {self.reference_model}'s {self.reference_quality:.3f} at "
            f"{self.reference_cost:.3g} (cost in the data's unit, USD unless it says otherwise)"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["knob"] = self.knob.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        fields = dict(data)
        fields["knob"] = Knob.from_dict(fields.get("knob", {}))
        return cls(**fields)


def calibrate(
    knob: Knob,
    predicted: FloatArray,
    costs: FloatArray,
    scores: FloatArray,
    models: Sequence[str],
) -> Calibration:
    """Choose λ for ``knob`` on calibration data: (n_prompts, n_models) arrays.

    ``scores`` may hold NaN (unknown); averages then skip the unknown entries. ``predicted``
    and ``costs`` must be finite.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n, m = predicted.shape
    if costs.shape != (n, m) or scores.shape != (n, m) or len(models) != m:
        raise ValueError("predicted, costs, scores and models must agree in shape")
    if n == 0:
        raise ValueError("calibration needs at least one prompt")
    if not (np.isfinite(predicted).all() and np.isfinite(costs).all()):
        raise ValueError("predicted quality and costs must be finite to calibrate")
    ref = _strongest(scores, costs)
    ref_quality = float(np.nanmean(scores[:, ref]))
    ref_cost = float(costs[:, ref].mean())
    lams = lambda_candidates(costs, predicted)
    quality, cost = sweep(predicted, costs, scores, lams)

    if knob.max_cost_fraction is not None:
        ok = cost <= knob.max_cost_fraction * ref_cost + 1e-15
        # cost falls as λ grows: the first λ within budget spends the most on quality
        i = int(np.argmax(ok)) if ok.any() else len(lams) - 1
    elif knob.min_quality_fraction is not None:
        ok = quality >= knob.min_quality_fraction * ref_quality - 1e-12
        i = int(np.flatnonzero(ok)[-1]) if ok.any() else int(np.argmax(quality))
    else:
        ok = np.ones(len(lams), dtype=bool)
        lams = np.array([knob.lam or 0.0])
        quality, cost = sweep(predicted, costs, scores, lams)
        i = 0
    return Calibration(
        lam=float(lams[i]),
        knob=knob,
        reference_model=models[ref],
        reference_quality=ref_quality,
        reference_cost=ref_cost,
        quality=float(quality[i]),
        cost=float(cost[i]),
        met=bool(ok[i]),
        n_prompts=n,
    )


def lambda_candidates(costs: FloatArray, predicted: FloatArray) -> FloatArray:
    """0, then a geometric grid from 'cost barely matters' to 'the cheapest always wins'."""
    gaps = np.abs(np.diff(np.sort(costs, axis=1), axis=1))
    spread = float(np.max(costs) - np.min(costs))
    if spread <= 0:
        return np.array([0.0])
    positive = gaps[gaps > 0]
    smallest = float(positive.min()) if positive.size else spread
    q_range = max(float(np.ptp(predicted)), 1e-9)
    # λ above q_range / smallest cost gap makes the cheapest model win on every prompt.
    hi = 2.0 * q_range / smallest
    lo = 1e-4 * q_range / spread
    return np.concatenate([[0.0], np.geomspace(lo, hi, GRID_POINTS - 1)])


def sweep(
    predicted: FloatArray, costs: FloatArray, scores: FloatArray, lams: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Average true quality and cost of routing with each λ in ``lams``."""
    rows = np.arange(predicted.shape[0])
    quality = np.empty(len(lams))
    cost = np.empty(len(lams))
    for k, lam in enumerate(lams):
        choice = select(predicted, costs, float(lam))
        chosen = scores[rows, choice]
        quality[k] = float(np.nanmean(chosen)) if np.isfinite(chosen).any() else math.nan
        cost[k] = float(costs[rows, choice].mean())
    return quality, cost


def _strongest(scores: FloatArray, costs: FloatArray) -> int:
    """Best average true quality; among equals the cheaper on average."""
    with np.errstate(invalid="ignore"):
        means = np.where(np.isfinite(scores).any(axis=0), np.nanmean(scores, axis=0), -np.inf)
    order = np.lexsort((costs.mean(axis=0), -means))
    return int(order[0])
