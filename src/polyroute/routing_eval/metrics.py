"""Offline routing metrics on a test set with every model's true quality and cost.

Inputs are aligned (n_prompts, n_models) arrays: ``Q`` true quality, ``C`` cost (USD),
``P`` the router's predicted quality. Nothing here reads files or knows model names.

- **Router curve**: for each λ of :func:`~polyroute.routing.tradeoff.lambda_grid` (plus the
  limit λ → ∞, "cheapest model of each prompt"), route every prompt with
  :func:`~polyroute.routing.tradeoff.select` on ``P`` and score the choice with ``Q``:
  one (average cost, average true quality) point per λ.
- **AIQ** (RouterBench, arXiv 2403.12031 §3): the area under the router's *non-decreasing
  convex hull* in the cost–quality plane, divided by the cost range. Points on the hull are
  reachable by mixing two operating points at random per prompt, which is why the hull and
  not the raw curve is integrated. Costs run from the cheapest to the dearest model of each
  prompt (averaged), the same range for every router on the data, so AIQs are comparable;
  the hull stays flat right of its best point and counts 0 left of its cheapest.
- **APGR / CPT** (RouteLLM, arXiv 2406.18665 §5.1, ``routellm/evals/evaluate.py``) for two
  models: PGR = (q − q_weak) / (q_strong − q_weak) as a function of the share of calls
  sent to the strong model; APGR is its area over shares 0…1; CPT(x%) the smallest share
  (in %) that reaches PGR = x%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from polyroute.routing.tradeoff import FloatArray, lambda_grid, select

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One operating point: a λ and what routing with it gives on average."""

    lam: float
    cost: float
    quality: float
    #: Share of prompts sent to each model (by column).
    shares: tuple[float, ...]


def outcome(q: FloatArray, c: FloatArray, choice: NDArray[np.intp]) -> tuple[float, float]:
    """(average cost, average true quality) of routing row i to column ``choice[i]``."""
    rows = np.arange(q.shape[0])
    return float(c[rows, choice].mean()), float(q[rows, choice].mean())


def router_curve(
    q: FloatArray, c: FloatArray, p: FloatArray, lams: FloatArray | None = None
) -> list[CurvePoint]:
    """The router's cost–quality points over ``lams`` and λ = ∞; repeats are dropped."""
    _check(q, c, p)
    if lams is None:
        lams = lambda_grid(c, quality_range=max(1.0, float(np.ptp(p))))
    choices = [(float(lam), select(p, c, float(lam))) for lam in lams]
    choices.append((float("inf"), cheapest_choice(p, c)))
    points: list[CurvePoint] = []
    m = q.shape[1]
    for lam, choice in choices:
        cost, quality = outcome(q, c, choice)
        if (
            points
            and abs(points[-1].cost - cost) <= _EPS
            and abs(points[-1].quality - quality) <= _EPS
        ):
            continue
        shares = np.bincount(choice, minlength=m) / len(choice)
        points.append(CurvePoint(lam, cost, quality, tuple(float(s) for s in shares)))
    return points


def cheapest_choice(p: FloatArray, c: FloatArray) -> NDArray[np.intp]:
    """The limit λ → ∞: per row the cheapest model; among equally cheap, the best predicted."""
    cheapest = c <= c.min(axis=1, keepdims=True) + _EPS
    return select(np.where(cheapest, p, -np.inf), c, 0.0)


def oracle_choice(q: FloatArray, c: FloatArray) -> NDArray[np.intp]:
    """Per row the best true score; among ties the cheapest (``select`` on the truth, λ = 0)."""
    return select(q, c, 0.0)


def single_model_points(q: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(average cost, average quality) of sending every prompt to each model."""
    return np.asarray(c.mean(axis=0), dtype=np.float64), np.asarray(q.mean(axis=0), np.float64)


def best_model(q: FloatArray, c: FloatArray) -> int:
    """Column of the best single model: highest average quality, then cheapest."""
    costs, quals = single_model_points(q, c)
    order = np.lexsort((costs, -quals))
    return int(order[0])


def cost_range(c: FloatArray) -> tuple[float, float]:
    """From the cheapest to the dearest choice of every prompt, averaged: all a router can span."""
    return float(c.min(axis=1).mean()), float(c.max(axis=1).mean())


def nondecreasing_hull(costs: FloatArray, qualities: FloatArray) -> FloatArray:
    """RouterBench's non-decreasing convex hull: (k, 2) points sorted by cost.

    The upper concave hull of the points, cut at its highest quality (beyond it, spending
    more buys nothing: the router can stay at its best point).
    """
    pts = sorted(zip(costs.tolist(), qualities.tolist(), strict=True), key=lambda t: (t[0], -t[1]))
    hull: list[tuple[float, float]] = []
    for x, y in pts:
        if hull and abs(hull[-1][0] - x) <= _EPS:
            continue  # same cost: the first (highest quality) one is kept
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], (x, y)) >= -_EPS:
            hull.pop()  # hull[-1] is on or under the segment hull[-2] → (x, y)
        hull.append((x, y))
    best = max(range(len(hull)), key=lambda i: (hull[i][1], -i))
    return np.asarray(hull[: best + 1], dtype=np.float64).reshape(-1, 2)


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def aiq(costs: FloatArray, qualities: FloatArray, c_min: float, c_max: float) -> float:
    """RouterBench's AIQ: ∫ hull(c) dc over [c_min, c_max] / (c_max − c_min)."""
    if c_max - c_min <= _EPS:
        return float(np.max(qualities))
    hull = nondecreasing_hull(costs, qualities)
    xs = np.clip(hull[:, 0], c_min, c_max)
    ys = hull[:, 1]
    xs = np.append(xs, c_max)  # flat after the best point
    ys = np.append(ys, ys[-1])
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))
    return area / (c_max - c_min)


def quality_at_cost(points: list[CurvePoint], budget: float) -> float | None:
    """Best true quality among the router's points costing at most ``budget``."""
    within = [pt.quality for pt in points if pt.cost <= budget + _EPS]
    return max(within) if within else None


def cost_to_reach(points: list[CurvePoint], quality: float) -> float | None:
    """Lowest average cost among the router's points with quality ≥ ``quality``; None if none."""
    costs = [pt.cost for pt in points if pt.quality >= quality - _EPS]
    return min(costs) if costs else None


@dataclass(frozen=True, slots=True)
class TwoModelMetrics:
    """RouteLLM's metrics for a strong/weak pair."""

    strong: int
    weak: int
    q_strong: float
    q_weak: float
    #: Share of calls to the strong model (0…1) and true quality there, from 0 to 1.
    strong_share: FloatArray
    quality: FloatArray
    apgr: float | None
    #: % of calls to the strong model needed for PGR = 50% / 80%.
    cpt50: float | None
    cpt80: float | None

    @property
    def pgr(self) -> FloatArray:
        return (self.quality - self.q_weak) / (self.q_strong - self.q_weak)


def two_model_metrics(q: FloatArray, p: FloatArray, strong: int | None = None) -> TwoModelMetrics:
    """APGR and CPT(50%), CPT(80%) for a two-column problem.

    The curve is RouteLLM's threshold sweep on the router's predicted advantage of the
    strong model, ``p[:, strong] − p[:, weak]``, at every distinct value, so the share of
    strong calls runs over all of 0…1 (a λ ≥ 0 sweep would never send the strong model a
    prompt the router thinks the weak one wins). Prompts with equal advantage switch
    together, so between points the curve is the expected value of a random tie-break.
    ``strong`` defaults to the column with the higher true average quality.
    """
    if q.shape[1] != 2 or p.shape != q.shape:
        raise ValueError("two_model_metrics needs (n, 2) arrays of the same shape")
    means = q.mean(axis=0)
    s = int(np.argmax(means)) if strong is None else strong
    w = 1 - s
    q_s, q_w = float(means[s]), float(means[w])
    adv = p[:, s] - p[:, w]
    order = np.argsort(-adv, kind="stable")
    gain = (q[order, s] - q[order, w]) / len(adv)
    # Points only where the advantage changes (a threshold cannot split equal values).
    sorted_adv = adv[order]
    cut = np.flatnonzero(np.diff(sorted_adv) < 0) + 1
    ks = np.concatenate([[0], cut, [len(adv)]])
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    shares = ks / len(adv)
    quality = q_w + cum[ks]
    if abs(q_s - q_w) <= _EPS:
        return TwoModelMetrics(s, w, q_s, q_w, shares, quality, None, None, None)
    pgr = (quality - q_w) / (q_s - q_w)
    apgr = float(np.sum((shares[1:] - shares[:-1]) * (pgr[1:] + pgr[:-1]) / 2))
    return TwoModelMetrics(
        s,
        w,
        q_s,
        q_w,
        shares,
        quality,
        apgr,
        _first_crossing(shares, pgr, 0.5),
        _first_crossing(shares, pgr, 0.8),
    )


def _first_crossing(xs: FloatArray, ys: FloatArray, target: float) -> float | None:
    """Smallest x (in %) where the piecewise-linear curve reaches ``target``.

    RouteLLM uses ``np.interp(target, ys, xs)``, which equals this when the curve rises
    monotonically; on a curve that dips, this is the share the router actually needs.
    """
    for i in range(len(xs)):
        if ys[i] >= target - _EPS:
            if i == 0:
                return 100.0 * float(xs[0])
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return 100.0 * float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
    return None


def _check(q: FloatArray, c: FloatArray, p: FloatArray) -> None:
    if q.ndim != 2 or q.shape != c.shape or q.shape != p.shape:
        raise ValueError(f"Q, C and P must have one shape, got {q.shape}, {c.shape}, {p.shape}")
    if q.shape[0] == 0 or q.shape[1] == 0:
        raise ValueError("need at least one prompt and one model")
    for name, arr in (("Q", q), ("C", c), ("P", p)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} has NaN or infinite values")
