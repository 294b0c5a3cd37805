"""Evaluate a router's predictions on a routing test set: a JSON report and predictions file.

The report (all plain JSON) holds, for the router, every single model, random routing and
the oracle: average true quality, average cost and, where there is one, the cost–quality
curve; plus AIQ, the quality at the best single model's cost, the cost at which the router
matches it, and for two models RouteLLM's APGR and CPT. See ``docs/routing-eval.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyroute.routing.tradeoff import select
from polyroute.routing_eval import metrics
from polyroute.routing_eval.dataset import FloatArray, RoutingDataError, RoutingDataset

REPORT_VERSION = 1


def align_predictions(
    dataset: RoutingDataset, models: Sequence[str], predicted: FloatArray
) -> tuple[RoutingDataset, FloatArray]:
    """Restrict ``dataset`` to the router's ``models`` and check ``predicted`` fits it.

    ``predicted`` is (n_prompts, len(models)) with columns in ``models``' order.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    if predicted.shape != (len(dataset), len(models)):
        raise RoutingDataError(
            f"predictions have shape {predicted.shape}, expected "
            f"({len(dataset)} prompts, {len(models)} models)"
        )
    if not np.isfinite(predicted).all():
        raise RoutingDataError("predictions contain NaN or infinite values")
    return dataset.subset_models(list(models)), predicted


def evaluate(
    dataset: RoutingDataset,
    predicted: FloatArray,
    *,
    predictions_path: str | Path | None = None,
    strong: str | None = None,
    lam: float | None = None,
) -> dict[str, Any]:
    """The evaluation report of ``predicted`` (columns = ``dataset.models``) on ``dataset``.

    ``dataset`` needs every score and cost (fill costs with
    :func:`polyroute.routing_eval.costs.fill_missing_costs`). With ``predictions_path``, also
    writes one JSONL row per prompt ``{"id", "predicted": {model: quality}}``.
    ``strong`` names the strong model of a two-model set (default: the better one).
    ``lam`` is the router's own λ (as saved): the report's ``router.at_lambda`` is where it
    serves on this data, beside the whole curve.
    """
    q, c, p = _matrices(dataset, predicted)
    models = dataset.models
    curve = metrics.router_curve(q, c, p)
    c_min, c_max = metrics.cost_range(c)
    model_costs, model_quals = metrics.single_model_points(q, c)
    best = metrics.best_model(q, c)
    best_cost, best_quality = float(model_costs[best]), float(model_quals[best])
    oracle = metrics.oracle_choice(q, c)
    oracle_cost, oracle_quality = metrics.outcome(q, c, oracle)
    mix_hull = metrics.nondecreasing_hull(model_costs, model_quals)
    curve_costs = np.array([pt.cost for pt in curve])
    curve_quals = np.array([pt.quality for pt in curve])
    quality_first = curve[0]  # λ = 0: the router's pick on predicted quality alone

    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "prompts": len(dataset),
        "models": list(models),
        "costs_known": True,
        "cost_range": [c_min, c_max],
        "router": {
            "quality": quality_first.quality,
            "cost": quality_first.cost,
            "aiq": metrics.aiq(curve_costs, curve_quals, c_min, c_max),
            "curve": [
                {
                    "lambda": None if math.isinf(pt.lam) else pt.lam,
                    "cost": pt.cost,
                    "quality": pt.quality,
                    "shares": dict(zip(models, pt.shares, strict=True)),
                }
                for pt in curve
            ],
            "hull": metrics.nondecreasing_hull(curve_costs, curve_quals).tolist(),
            "quality_at_best_model_cost": metrics.quality_at_cost(curve, best_cost),
            "cost_to_match_best_model": metrics.cost_to_reach(curve, best_quality),
        },
        "single_models": {
            m: {"quality": float(model_quals[j]), "cost": float(model_costs[j])}
            for j, m in enumerate(models)
        },
        "best_model": {"name": models[best], "quality": best_quality, "cost": best_cost},
        "random": {
            "quality": float(q.mean()),
            "cost": float(c.mean()),
            "curve": mix_hull.tolist(),
            "aiq": metrics.aiq(model_costs, model_quals, c_min, c_max),
        },
        "oracle": {
            "quality": oracle_quality,
            "cost": oracle_cost,
            "shares": _shares(models, oracle),
        },
        "two_model": _two_model(q, p, models, strong) if len(models) == 2 else None,
    }
    cost_to_match = report["router"]["cost_to_match_best_model"]
    if lam is not None:
        served_cost, served_quality = metrics.outcome(q, c, select(p, c, lam))
        report["router"]["at_lambda"] = {
            "lambda": lam,
            "quality": served_quality,
            "cost": served_cost,
        }
    report["router"]["cost_saving_vs_best_model"] = (
        None if cost_to_match is None or best_cost <= 0 else 1.0 - cost_to_match / best_cost
    )
    if predictions_path is not None:
        write_predictions(predictions_path, dataset.ids, models, p)
    return report


def evaluate_quality(
    dataset: RoutingDataset,
    predicted: FloatArray,
    *,
    predictions_path: str | Path | None = None,
    strong: str | None = None,
) -> dict[str, Any]:
    """The report of :func:`evaluate` for data with no costs (and no prices to estimate them).

    What needs no cost is measured as in :func:`evaluate`: the router's quality when it
    picks on predicted quality alone (λ = 0), every single model's quality, random routing,
    the oracle (first best model of each prompt, as there is no cheapest) and, for two
    models, RouteLLM's APGR and CPT, which are defined on the share of strong calls and not
    on cost (RouteLLM's own evaluation uses no prices). Every cost figure is ``None`` and
    ``report["costs_known"]`` is false, so no reader takes a missing cost for $0.
    """
    q, _, p = _matrices(dataset, predicted, need_costs=False)
    models = dataset.models
    rows = np.arange(q.shape[0])
    pick = np.argmax(p, axis=1)
    best = int(np.argmax(q.mean(axis=0)))
    oracle = np.argmax(q, axis=1)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "prompts": len(dataset),
        "models": list(models),
        "costs_known": False,
        "cost_range": None,
        "router": {
            "quality": float(q[rows, pick].mean()),
            "cost": None,
            "shares": _shares(models, pick),
            "aiq": None,
            "curve": [],
            "hull": [],
            "quality_at_best_model_cost": None,
            "cost_to_match_best_model": None,
            "cost_saving_vs_best_model": None,
        },
        "single_models": {
            m: {"quality": float(q[:, j].mean()), "cost": None} for j, m in enumerate(models)
        },
        "best_model": {"name": models[best], "quality": float(q[:, best].mean()), "cost": None},
        "random": {"quality": float(q.mean()), "cost": None, "curve": [], "aiq": None},
        "oracle": {
            "quality": float(q[rows, oracle].mean()),
            "cost": None,
            "shares": _shares(models, oracle),
        },
        "two_model": _two_model(q, p, models, strong) if len(models) == 2 else None,
    }
    if predictions_path is not None:
        write_predictions(predictions_path, dataset.ids, models, p)
    return report


def write_predictions(
    path: str | Path, ids: Sequence[str], models: Sequence[str], predicted: FloatArray
) -> None:
    """One JSONL row per prompt: ``{"id": ..., "predicted": {model: expected quality}}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for id_, row in zip(ids, predicted, strict=True):
            pred = {m: float(v) for m, v in zip(models, row, strict=True)}
            f.write(json.dumps({"id": id_, "predicted": pred}, ensure_ascii=False) + "\n")


def write_report(path: str | Path, report: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _matrices(
    dataset: RoutingDataset, predicted: FloatArray, *, need_costs: bool = True
) -> tuple[FloatArray, FloatArray, FloatArray]:
    p = np.asarray(predicted, dtype=np.float64)
    if p.shape != dataset.scores.shape:
        raise RoutingDataError(
            f"predictions have shape {p.shape}, the dataset {dataset.scores.shape}"
        )
    if not np.isfinite(p).all():
        raise RoutingDataError("predictions contain NaN or infinite values")
    missing = [m for j, m in enumerate(dataset.models) if np.isnan(dataset.scores[:, j]).any()]
    if missing:
        raise RoutingDataError(
            f"no true score on some prompts for {', '.join(missing)}; evaluate on models "
            "scored on every prompt (RoutingDataset.subset_models)"
        )
    if not need_costs:
        return dataset.scores, np.full(dataset.scores.shape, np.nan), p
    if dataset.costs is None or np.isnan(dataset.costs).any():
        raise RoutingDataError(
            "the dataset lacks some costs; estimate them from prices first "
            "(polyroute.routing_eval.costs.fill_missing_costs, or --prices on the command line)"
        )
    return dataset.scores, dataset.costs, p


def _shares(models: Sequence[str], choice: Any) -> dict[str, float]:
    counts = np.bincount(choice, minlength=len(models)) / len(choice)
    return {m: float(s) for m, s in zip(models, counts, strict=True)}


def _two_model(
    q: FloatArray, p: FloatArray, models: Sequence[str], strong: str | None
) -> dict[str, Any]:
    if strong is not None and strong not in models:
        raise RoutingDataError(f"strong model {strong!r} is not one of {', '.join(models)}")
    tm = metrics.two_model_metrics(q, p, None if strong is None else list(models).index(strong))
    # The metrics use every point; the report keeps at most ~200 of them for plotting.
    keep = np.unique(np.linspace(0, len(tm.strong_share) - 1, 201).round().astype(np.intp))
    return {
        "strong": models[tm.strong],
        "weak": models[tm.weak],
        "apgr": tm.apgr,
        "cpt_50_pct": tm.cpt50,
        "cpt_80_pct": tm.cpt80,
        "curve": [
            {"strong_pct": 100.0 * float(s), "quality": float(qq)}
            for s, qq in zip(tm.strong_share[keep], tm.quality[keep], strict=True)
        ],
    }
