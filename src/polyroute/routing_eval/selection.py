"""Which settings ``polyroute train`` gives its router, chosen on the user's own data.

The ``mf`` router's options were tuned once on LLMRouter's data (5.6k prompts, 9 models, 14
tasks), but the router is trained on whatever data its user has: two models or eleven, 600
prompts or 20,000, binary or fractional scores. :data:`CANDIDATES` are a few settings that
each won somewhere (docs/routers.md, "Settings chosen on the data"); :func:`select_settings`
fits each on the same grouped folds that give the knob its out-of-fold (OOF) predictions,
scores the OOF predictions, and keeps the best. The winner's OOF predictions are the
calibration set, so the choice costs ``folds`` fits per extra candidate and nothing else.

The score is the **mean masked log-loss** (binary cross-entropy against the scores as they
are, fractional ones included) of the OOF predictions, lower is better. Not AIQ or APGR of
the OOF curve, which is what the product is judged by: those are step functions of how the
predictions rank the prompts, move by whole prompts on small data, need every cost (a knob
without calibration does not), and, measured on LLMRouter's data, ranked the candidates no
better than the log-loss did (docs/routers.md). The log-loss is a proper score, defined for
any number of models and any data, and smooth enough that differences of a few thousandths
are not noise on thousands of scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polyroute.routing.tradeoff import FloatArray
from polyroute.routing_eval.dataset import RoutingDataset


@dataclass(frozen=True, slots=True)
class Candidate:
    """One setting ``polyroute train`` may choose: a label for people and the router's params."""

    label: str
    params: Mapping[str, Any] = field(default_factory=dict)


#: The settings tried when ``polyroute train`` is given no ``--router``, the router's own
#: defaults first (it wins ties). See docs/routers.md for why these and not others.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("default", {}),
)

#: The OOF predictions of the router ``build`` makes from the given params.
OutOfFold = Callable[[Mapping[str, Any]], FloatArray]


@dataclass(frozen=True, slots=True)
class Selection:
    """The candidate kept, its OOF predictions, and every candidate's score."""

    chosen: Candidate
    #: The chosen candidate's out-of-fold predictions (the knob's calibration set).
    predicted: FloatArray
    #: Mean masked OOF log-loss by candidate label, in the order tried.
    scores: dict[str, float]
    params: dict[str, dict[str, Any]]
    seconds: float

    def describe(self) -> dict[str, Any]:
        """What the manifest's ``training.selection`` keeps."""
        return {
            "chosen": self.chosen.label,
            "score": "mean masked log-loss of the out-of-fold predictions (lower is better)",
            "candidates": {
                label: {"params": self.params[label], "log_loss": round(score, 5)}
                for label, score in self.scores.items()
            },
            "seconds": round(self.seconds, 1),
        }


def masked_log_loss(scores: FloatArray, predicted: FloatArray) -> float:
    """Mean binary cross-entropy of ``predicted`` against the known entries of ``scores``
    (NaN = unknown; fractional scores count as they are)."""
    known = np.isfinite(scores)
    if not known.any():
        raise ValueError("no known score to compare predictions with")
    y = scores[known]
    p = np.clip(predicted[known], 1e-6, 1 - 1e-6)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def select_settings(
    candidates: Sequence[Candidate],
    oof: OutOfFold,
    dataset: RoutingDataset,
    *,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Selection:
    """The candidate whose OOF predictions (``oof(params)``) have the lowest masked log-loss
    on ``dataset``'s scores; the first wins a tie."""
    if not candidates:
        raise ValueError("no candidate settings to choose from")
    started = time.perf_counter()
    scores: dict[str, float] = {}
    best: tuple[float, Candidate, FloatArray] | None = None
    for i, candidate in enumerate(candidates):
        progress(f"settings {i + 1} of {len(candidates)} ({candidate.label}): out-of-fold predictions")
        predicted = oof(candidate.params)
        score = masked_log_loss(dataset.scores, predicted)
        scores[candidate.label] = score
        if best is None or score < best[0]:
            best = (score, candidate, predicted)
    assert best is not None
    return Selection(
        chosen=best[1],
        predicted=best[2],
        scores=scores,
        params={c.label: dict(c.params) for c in candidates},
        seconds=time.perf_counter() - started,
    )


def merged(candidates: Sequence[Candidate], params: Mapping[str, Any] | None) -> list[Candidate]:
    """``candidates`` with ``params`` set over each (what the caller fixed is not chosen),
    those that became the same setting as an earlier one dropped."""
    out: list[Candidate] = []
    seen: list[dict[str, Any]] = []
    for c in candidates:
        full = {**c.params, **dict(params or {})}
        if full in seen:
            continue
        seen.append(full)
        out.append(Candidate(c.label, full))
    return out


__all__ = [
    "CANDIDATES",
    "Candidate",
    "Selection",
    "masked_log_loss",
    "merged",
    "select_settings",
]
