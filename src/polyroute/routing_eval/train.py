"""Training a learned router from a routing dataset, ready to save and serve.

1. Costs: taken from the data, the missing ones estimated from prices
   (:func:`polyroute.routing_eval.costs.fill_missing_costs`).
2. Embeddings of every prompt (cached on disk by the CLI: it is the slow step on a CPU).
3. Out-of-fold predictions: the router is fitted ``folds`` times, each time predicting the
   fold it did not see (prompts with the same text stay in one fold). These honest
   predictions are the calibration set of the knob.
4. The final router is fitted on everything, and the knob calibrated. Those ``folds`` + 1
   fits do not depend on each other and run two at a time
   (:mod:`polyroute.routing_eval.threads`); the router is the same as fitted in order.
5. The anchor pool (:mod:`polyroute.routing_eval.anchors`): the prompts a new model should
   answer to be added later: a sample stratified by task and by the out-of-fold predictions.
6. For an ``mf`` router, how it will take a new model from those anchors, chosen by
   simulating it on each training model in turn (:mod:`polyroute.routing_eval.onboard_tuning`),
   unless ``params`` set it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polyroute.bench.questions import Question
from polyroute.embeddings.base import Embedder, Float32Array
from polyroute.embeddings.registry import default_embedder
from polyroute.routing.knob import Knob
from polyroute.routing.pricing import DEFAULT_OUTPUT_TOKENS, PriceTable
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.learned import CalibrationSet, LearnedRouter, price_table
from polyroute.routing.routers.mf import MFRouter
from polyroute.routing.tradeoff import FloatArray
from polyroute.routing_eval.anchors import anchor_pool, questions_by_prompt
from polyroute.routing_eval.costs import fill_missing_costs, infer_prices
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset, prompt_key
from polyroute.routing_eval.onboard_tuning import tune_onboarding
from polyroute.routing_eval.threads import default_workers, training_threads

#: The learned router ``polyroute train`` builds when no kind is named: the best measured on
#: LLMRouter's data (see docs/routers.md for the figures), and the one that can take a new
#: model without retraining.
BEST_KIND = "mf"
#: Without a knob: match the strongest model's quality for as little as possible.
DEFAULT_KNOB = Knob(min_quality_fraction=1.0)


@dataclass
class TrainResult:
    router: LearnedRouter
    #: Facts about the training run, stored in the manifest.
    summary: dict[str, Any] = field(default_factory=dict)
    #: The anchor pool (:mod:`polyroute.routing_eval.anchors`), saved beside the router.
    anchors: list[dict[str, Any]] = field(default_factory=list)


def learned_kinds() -> list[str]:
    """The registered router kinds that learn from data."""
    kinds = []
    for name in ROUTERS.names():
        cls = ROUTERS.get(name)
        if isinstance(cls, type) and issubclass(cls, LearnedRouter):
            kinds.append(name)
    return kinds


def train_router(
    dataset: RoutingDataset,
    *,
    kind: str = BEST_KIND,
    knob: Knob = DEFAULT_KNOB,
    prices: PriceTable | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    embedder: Embedder | None = None,
    params: Mapping[str, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    name: str | None = None,
    questions: Sequence[Question] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> TrainResult:
    """Train a router of ``kind`` on ``dataset`` and calibrate ``knob``; see the module doc.

    ``questions`` (the bench questions the prompts came from) give the anchor pool what
    grading its anchors needs."""
    started = time.perf_counter()
    if kind not in learned_kinds():
        raise RoutingDataError(
            f"unknown learned router {kind!r}; choose one of: {', '.join(learned_kinds())}"
        )
    if len(dataset) < 2 * folds:
        raise RoutingDataError(f"too few prompts to train on: {len(dataset)} (need {2 * folds})")
    embedder = embedder or default_embedder()
    prices = prices or {}
    estimate = None
    if not dataset.has_all_costs and prices:
        dataset, estimate = fill_missing_costs(dataset, prices, output_tokens=output_tokens)
    if not dataset.has_all_costs and knob.needs_calibration:
        unpriced = [m for m in dataset.models if m not in prices]
        raise RoutingDataError(
            f"{knob.describe()} needs every prompt's cost; the data lacks some and there is no "
            f"price for {', '.join(unpriced) or 'some models'} (`polyroute train` also looks in "
            "the model catalog): "
            "pass prices (--prices FILE), or --lambda 0 to route on quality alone"
        )

    prices_from = "given" if prices else "none"
    if not prices and dataset.costs is not None:
        # Costs but no price list (e.g. data imported with its prices): the router still
        # needs prices to cost a live request, so take the ones the costs imply.
        prices = infer_prices(dataset, output_tokens=output_tokens)
        prices_from = "inferred from the data's costs (least squares on prompt tokens)"

    def build() -> LearnedRouter:
        cls = ROUTERS.get(kind)
        assert issubclass(cls, LearnedRouter)
        return cls(name or kind, embedder=embedder, **dict(params or {}))

    progress(f"embedding {len(dataset)} prompts with {embedder.model_id}")
    t0 = time.perf_counter()
    embeddings = embedder.embed(dataset.prompts)
    embed_s = time.perf_counter() - t0
    progress(
        f"fitting the router, and {folds} more without one fold each for the knob's "
        f"calibration ({default_workers()} at a time)"
    )
    t1 = time.perf_counter()
    predicted, router = fit_with_out_of_fold(build, embeddings, dataset, folds=folds, seed=seed)
    router.prices = price_table(prices, dataset.models)
    router.output_tokens = output_tokens
    if dataset.costs is not None and dataset.has_all_costs:
        calibration = router.set_knob(
            knob, CalibrationSet(predicted, dataset.costs, dataset.scores)
        )
    else:
        calibration = router.set_knob(knob)
    fit_s = time.perf_counter() - t1
    seconds = {"embedding": round(embed_s, 1), "fitting": round(fit_s, 1)}
    summary: dict[str, Any] = {
        "prompts": len(dataset),
        "models": len(dataset.models),
        "known_scores": int(np.isfinite(dataset.scores).sum()),
        "mean_scores": {
            m: round(float(np.nanmean(dataset.scores[:, j])), 4)
            for j, m in enumerate(dataset.models)
        },
        "tasks": dict(Counter(t for t in dataset.tasks if t is not None).most_common()),
        "costs": estimate.describe() if estimate else "from the data",
        "prices": prices_from,
        "folds": folds,
        "seed": seed,
        "seconds": seconds,
        "calibration": calibration.describe(),
    }
    keyed = questions_by_prompt(questions) if questions else None
    anchors = anchor_pool(dataset, keyed, predicted=predicted)
    summary["anchor_pool"] = {
        "prompts": len(anchors),
        "gradable": sum("answer" in row for row in anchors),
    }
    tuned = "prior_strength" in (params or {})
    costs = dataset.costs if dataset.has_all_costs else None
    if isinstance(router, MFRouter) and costs is not None and not tuned:
        progress("choosing how new models are added (simulated on each training model)")
        row_of = {id_: i for i, id_ in enumerate(dataset.ids)}
        rows = [row_of[str(r["id"])] for r in anchors]
        t2 = time.perf_counter()
        choice = tune_onboarding(
            router, embeddings, dataset.scores, costs, rows,
            texts=dataset.prompts, tasks=dataset.tasks, seed=seed,
        )  # fmt: skip
        if choice is not None:
            router.prior_strength = choice.prior_strength
            summary["onboarding"] = choice.describe()
        seconds["onboarding"] = round(time.perf_counter() - t2, 1)
    elif isinstance(router, MFRouter) and tuned:
        summary["onboarding"] = {
            "prior_strength": router.prior_strength,
            "simulated": "no: the strength was given",
        }
    seconds["total"] = round(time.perf_counter() - started, 1)
    return TrainResult(router, summary, anchors)


def out_of_fold(
    build: Callable[[], LearnedRouter],
    embeddings: Float32Array,
    dataset: RoutingDataset,
    *,
    folds: int,
    seed: int = 0,
    workers: int | None = None,
) -> FloatArray:
    """Each prompt's prediction by a router fitted without its fold (same texts, same fold)."""
    predicted, _ = _fits(build, embeddings, dataset, folds=folds, seed=seed, full=False,
                         workers=workers)  # fmt: skip
    return predicted


def fit_with_out_of_fold(
    build: Callable[[], LearnedRouter],
    embeddings: Float32Array,
    dataset: RoutingDataset,
    *,
    folds: int,
    seed: int = 0,
    workers: int | None = None,
) -> tuple[FloatArray, LearnedRouter]:
    """:func:`out_of_fold`'s predictions, and a router fitted on every prompt: the
    ``folds`` + 1 fits on ``workers`` threads (:func:`~polyroute.routing_eval.threads
    .training_threads`; 1 = in order, here)."""
    predicted, router = _fits(build, embeddings, dataset, folds=folds, seed=seed, full=True,
                              workers=workers)  # fmt: skip
    assert router is not None
    return predicted, router


def _fits(
    build: Callable[[], LearnedRouter],
    embeddings: Float32Array,
    dataset: RoutingDataset,
    *,
    folds: int,
    seed: int,
    full: bool,
    workers: int | None,
) -> tuple[FloatArray, LearnedRouter | None]:
    groups: dict[str, int] = {}
    group_of = np.array([groups.setdefault(prompt_key(p), len(groups)) for p in dataset.prompts])
    fold_of_group = np.random.default_rng(seed).permutation(len(groups)) % folds
    fold = fold_of_group[group_of]
    texts = np.asarray(dataset.prompts, dtype=object)
    # The final fit first: it is the longest, and the folds' fits fill in beside it.
    jobs: list[int | None] = ([None] if full else []) + [
        f for f in range(folds) if (fold == f).any()
    ]

    def fit(f: int | None) -> LearnedRouter:
        keep = np.ones(len(dataset), dtype=bool) if f is None else fold != f
        router = build()
        try:
            router.fit(
                embeddings[keep],
                dataset.scores[keep],
                dataset.models,
                texts[keep].tolist(),
                [t for t, k in zip(dataset.tasks, keep, strict=True) if k],
            )
        except ValueError as e:
            if f is None:
                raise
            raise RoutingDataError(f"cannot train on fold {f + 1} of {folds}: {e}") from None
        return router

    predicted = np.empty(dataset.scores.shape)
    final: LearnedRouter | None = None
    with training_threads(workers) as run:
        for f, router in zip(jobs, run(fit, jobs), strict=True):
            if f is None:
                final = router
                continue
            held = fold == f
            predicted[held] = router.predict_embeddings(embeddings[held], texts[held].tolist())
    return predicted, final
