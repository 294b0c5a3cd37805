"""Adding a model to a trained ``mf`` router from routing rows that hold its scores.

The rows are usually a ``polyroute bench`` results file on the router's anchors. A row whose
id is in the router's anchor pool is embedded from the pool's prompt (the text the router
was trained on: for a multiple-choice question, the query without the options the bench
added); any other row from its own prompt. Everything but the new model's vector stays as
trained (:meth:`polyroute.routing.routers.mf.MFRouter.add_model`). The known models' scores
that the pool keeps for its prompts (routers trained since pools kept them) go with the new
model's, so its answers are read against theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyroute.routing.routers.learned import LearnedRouter
from polyroute.routing.routers.mf import MFRouter
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset


@dataclass(frozen=True, slots=True)
class Added:
    """What :func:`add_model_from_data` did."""

    model: str
    prompts: int
    #: Of those, how many were anchors of the router's pool.
    anchors: int
    #: The model was already one of the router's (a prior, or refitted with ``replace``).
    replaced: bool
    mean_score: float


def require_mf(router: LearnedRouter, path: object) -> MFRouter:
    """``router`` as an :class:`MFRouter`, or a :class:`RoutingDataError` saying what to do."""
    if not isinstance(router, MFRouter):
        raise RoutingDataError(
            f"{path} holds a {router.kind!r} router, which cannot take a new model without "
            "retraining; train an mf router (`polyroute train --router mf ...`, the default)"
        )
    return router


def add_model_from_data(
    router: MFRouter,
    dataset: RoutingDataset,
    model: str,
    *,
    pool: Sequence[Mapping[str, Any]] | None = None,
    price: tuple[float, float] | None = None,
    replace: bool = False,
) -> Added:
    """Fit ``model``'s vector from its scores in ``dataset`` (see the module doc)."""
    if model not in dataset.models:
        raise RoutingDataError(
            f"the data holds no score for {model!r}; it scores: {', '.join(dataset.models)}"
        )
    existing = model in router.models
    if existing and model not in router.priors and not replace:
        raise RoutingDataError(
            f"{model!r} is already one of the router's models, learned from its training "
            "data; pass --replace to refit it from these scores only"
        )
    column = dataset.scores[:, dataset.models.index(model)]
    rows = np.flatnonzero(np.isfinite(column))
    if len(rows) == 0:
        raise RoutingDataError(f"every score of {model!r} in the data is missing")
    by_id = {str(r["id"]): r for r in pool or ()}
    prompts = [str(by_id.get(dataset.ids[i], {}).get("prompt", dataset.prompts[i])) for i in rows]
    from_pool = sum(dataset.ids[i] in by_id for i in rows)
    embeddings = router.embedder.embed(prompts)
    try:
        used = router.add_model(
            model,
            embeddings,
            column[rows],
            price=price,
            known=known_scores(by_id, dataset, list(rows)),
            texts=prompts,
        )
    except ValueError as e:
        raise RoutingDataError(f"cannot add {model!r}: {e}") from None
    return Added(model, used, from_pool, existing, float(column[rows].mean()))


def known_scores(
    pool: Mapping[str, Mapping[str, Any]], dataset: RoutingDataset, rows: Sequence[int]
) -> dict[str, Any]:
    """The pool's own scores of its models on ``dataset``'s ``rows`` (NaN off the pool)."""
    known: dict[str, Any] = {}
    for k, i in enumerate(rows):
        scores = pool.get(dataset.ids[i], {}).get("scores") or {}
        for m, v in scores.items():
            known.setdefault(m, np.full(len(rows), np.nan))[k] = float(v)
    return known
