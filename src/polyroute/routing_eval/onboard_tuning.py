"""How an mf router should take a new model, chosen by simulating it on the router's own models.

A new model is fitted from its scores on a few anchors (:meth:`MFRouter.add_model`) under two
settings: how much to trust the known models' spread (``prior_strength``) and how far each
anchor's difficulty may be read off the known models' own scores on it (``prompt_offset_sd``).
They cannot be tuned on the model being added (it has no data yet) nor, honestly, on a
benchmark's held-out model. So ``polyroute train`` tunes them on the training models alone:
each model in turn plays the newcomer (inner leave-one-model-out). Its vector is dropped from
the prior, it is refitted from its true scores on the pool's first ``anchors`` prompts under
every setting of a small grid, and the router, with that refitted vector, routes a sample of
the training prompts; the setting kept is the one whose routing keeps most of the router's
own gain (quality at the best model's cost and AIQ, each as a share of the gap between the
router with the model's trained vector and the best model or the random mix, averaged).

Routing, not log-loss, is the criterion because that is what onboarding is for, and the two
disagree: on LLMRouter's data the log-loss of the simulated newcomer's predictions prefers
weak priors (strength 0.3-1: the fit follows its 50 binary scores), and the models onboarded
with the settings it chose kept less of the router's gain (leave-one-model-out, 50 anchors:
83% against 86% for the fixed strength 3 used before), plausibly because routing pays more for a
newcomer over-estimated (it takes traffic it then fails) than under-estimated.

The simulated newcomer's tower was trained with its data, which a real newcomer's was not,
so the simulation is optimistic about what anchors can pin down. Retraining a tower without
each model would remove that at one training per model; it was tried with the log-loss
criterion only (one held-out model, 5 folds), where it chose the same weak priors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import threadpoolctl  # type: ignore[import-untyped]

from polyroute.embeddings.base import Float32Array
from polyroute.routing.routers.mf import MFRouter, fit_member
from polyroute.routing.tradeoff import FloatArray, lambda_grid
from polyroute.routing_eval import metrics

#: The settings tried (``prior_strength`` × ``prompt_offset_sd``).
STRENGTHS = (0.3, 1.0, 3.0, 10.0, 30.0)
OFFSET_SDS = (0.0, 1.0, 2.0, 4.0)
#: Anchors a simulated newcomer answers: ``polyroute router onboard``'s default count.
ANCHORS = 50
#: Training prompts the simulated routers route (a seeded sample; all when fewer).
SAMPLE = 2000
#: λ values of each simulated router's curve (the evaluation's 200 are more than a choice
#: among 20 settings needs, and this runs 20 × models times).
CURVE_POINTS = 50
#: Fewer anchors, or fewer prompts left to route, and the simulation is noise: not run.
MIN_PROMPTS = 20


@dataclass(frozen=True, slots=True)
class OnboardingChoice:
    """The settings chosen, and the mean share of gain each setting kept in the simulation."""

    prior_strength: float
    prompt_offset_sd: float
    anchors: int
    models: int
    kept: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "prior_strength": self.prior_strength,
            "prompt_offset_sd": self.prompt_offset_sd,
            "simulated": f"each of {self.models} training models onboarded from "
            f"{self.anchors} anchors (inner leave-one-model-out)",
            "gain_kept": self.kept,
        }


def tune_onboarding(
    router: MFRouter,
    embeddings: Float32Array,
    scores: FloatArray,
    costs: FloatArray,
    anchor_rows: Sequence[int],
    *,
    anchors: int = ANCHORS,
    sample: int = SAMPLE,
    seed: int = 0,
) -> OnboardingChoice | None:
    """The best (``prior_strength``, ``prompt_offset_sd``) for ``router`` (module doc), or
    None when it cannot be simulated (fewer than three models, or fewer than
    :data:`MIN_PROMPTS` anchors or prompts besides them).

    ``embeddings``, ``scores`` and ``costs`` are the training data's (rows = prompts, columns
    = ``router.models``); ``anchor_rows`` the rows of the anchor pool, in its order."""
    m = len(router.models)
    picked = [int(i) for i in anchor_rows[:anchors]]
    rest = np.setdiff1d(np.arange(len(scores)), picked)
    if m < 3 or len(picked) < MIN_PROMPTS or len(rest) < MIN_PROMPTS:
        return None
    rng = np.random.default_rng(seed)
    routed = np.sort(rng.choice(rest, min(sample, len(rest)), replace=False))
    q, c = np.nan_to_num(scores[routed]), costs[routed]
    lams = lambda_grid(c, points=CURVE_POINTS)
    vectors = router.model_vectors()
    at_anchors = router.features(embeddings[picked])
    at_routed = router.features(embeddings[routed])
    trained = _mean_probabilities(at_routed, vectors)
    grid = [(s, sd) for s in STRENGTHS for sd in OFFSET_SDS]
    kept = np.zeros(len(grid))
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        for k in range(m):
            y = scores[picked, k]
            if not np.isfinite(y).any():
                continue
            known = np.isfinite(y)
            reference = [j for j in range(m) if j != k]
            full = _figures(q, c, trained, lams)
            for g, (strength, sd) in enumerate(grid):
                column = np.zeros(len(routed))
                for za, zr, u in zip(at_anchors, at_routed, vectors, strict=True):
                    row = fit_member(
                        za[known], u, reference, y[known],
                        peers=reference, peer_scores=scores[picked][known][:, reference],
                        prior_strength=strength, offset_sd=sd,
                    )  # fmt: skip
                    column += _sigmoid(zr @ row[:-1] + row[-1]) / len(vectors)
                predicted = trained.copy()
                predicted[:, k] = column
                kept[g] += _kept(_figures(q, c, predicted, lams), full) / m
    best = int(np.argmax(kept))
    return OnboardingChoice(
        prior_strength=grid[best][0],
        prompt_offset_sd=grid[best][1],
        anchors=len(picked),
        models=m,
        kept={f"{s:g}/{sd:g}": round(float(v), 4) for (s, sd), v in zip(grid, kept, strict=True)},
    )


@dataclass(frozen=True, slots=True)
class _Figures:
    quality_at_best_cost: float
    aiq: float
    best_quality: float
    mix_aiq: float


def _figures(q: FloatArray, c: FloatArray, p: FloatArray, lams: FloatArray) -> _Figures:
    """The two figures onboarding is judged by (as :func:`~polyroute.routing_eval.evaluate
    .evaluate` reports them), with their baselines."""
    points = metrics.router_curve(q, c, p, lams)
    c_min, c_max = metrics.cost_range(c)
    costs = np.array([pt.cost for pt in points])
    quals = np.array([pt.quality for pt in points])
    model_costs, model_quals = metrics.single_model_points(q, c)
    best = metrics.best_model(q, c)
    at_best = metrics.quality_at_cost(points, float(model_costs[best]))
    return _Figures(
        quality_at_best_cost=float(model_quals[best] if at_best is None else at_best),
        aiq=metrics.aiq(costs, quals, c_min, c_max),
        best_quality=float(model_quals[best]),
        mix_aiq=metrics.aiq(model_costs, model_quals, c_min, c_max),
    )


def _kept(x: _Figures, full: _Figures) -> float:
    """The mean of the two shares of ``full``'s gain that ``x`` keeps."""
    gain_q = max(full.quality_at_best_cost - full.best_quality, 1e-3)
    gain_aiq = max(full.aiq - full.mix_aiq, 1e-3)
    share_q = (x.quality_at_best_cost - full.best_quality) / gain_q
    share_aiq = (x.aiq - full.mix_aiq) / gain_aiq
    return (share_q + share_aiq) / 2


def _mean_probabilities(features: list[FloatArray], vectors: list[FloatArray]) -> FloatArray:
    total = sum(
        _sigmoid(z @ u[:, :-1].T + u[:, -1]) for z, u in zip(features, vectors, strict=True)
    )
    return np.asarray(total, dtype=np.float64) / len(features)


def _sigmoid(t: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(t, -30.0, 30.0))))
