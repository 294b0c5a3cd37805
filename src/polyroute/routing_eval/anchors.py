"""Anchor prompts: the training prompts a new model answers so that a router can score it.

A new model is added to an ``mf`` router by fitting its vector to its scores on a few prompts
(:meth:`polyroute.routing.routers.mf.MFRouter.add_model`). Which prompts, then? The first
idea, the prompts on which the known models differ most, is wrong, measured: leave-one-model-
out on LLMRouter's data, a newcomer fitted on the 50 (or even 1,000) prompts of widest
predicted spread fitted them perfectly and under-predicted the rest by 0.1-0.15 on average
(llama-3.1-nemotron-51b: 0.44-0.49 predicted against 0.60 true), while as many prompts drawn
at random were right on average (0.595). The frozen tower cannot represent a new model
exactly, so the vector that fits a skewed sample best is wrong for the whole population.

So the pool is a *stratified sample*: strata are the tasks, and within each task the thirds
of its prompts' informativeness (the standard deviation across models of the router's out-of-fold
predicted quality: how much the models are expected to differ there), prompts are drawn at
random (seeded) within each stratum, and strata take turns in proportion to their size
(tasks first, then the thirds within the task), so
that every prefix of the pool is representative of the training data, covers its tasks and
levels of discrimination, and repeats none. Informativeness is kept in each row (for people,
and to show the design), and so are the known models' own scores on the prompt (``scores``:
a new model's answers are read against them, :meth:`MFRouter.add_model`).

The pool is saved with the router (``anchors.jsonl``, :func:`polyroute.routing.persist.save_router`)
so that ``polyroute router anchors`` needs no training data. Where the training prompts came
from a bench suite with reference answers (``polyroute train --questions llmrouter:train``),
each pool row also keeps what grading needs (the text asked, the answers, the grader, the
options), so the anchors file is itself a suite ``polyroute bench`` can run and grade.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyroute.bench.questions import Question
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset, prompt_key

#: Prompts kept in a router's pool: enough for any sensible anchor count, small on disk.
POOL_SIZE = 1000
#: What a question adds to a pool row (and an anchors file line) for grading.
QUESTION_FIELDS = ("answer", "grader", "choices")


def informativeness(scores: Any) -> Any:
    """Per prompt, the standard deviation of the known models' scores (0 with fewer than two)."""
    s = np.asarray(scores, dtype=np.float64)
    known = np.isfinite(s)
    count = known.sum(axis=1)
    mean = np.where(count > 0, np.nansum(s, axis=1) / np.maximum(count, 1), 0.0)
    var = np.nansum((s - mean[:, None]) ** 2, axis=1) / np.maximum(count, 1)
    return np.where(count >= 2, np.sqrt(var), 0.0)


def question_fields(question: Question) -> dict[str, Any]:
    """What grading ``question`` needs, as fields of a bench JSONL line (``bench/suites.py``)."""
    fields: dict[str, Any] = {
        "ask": question.prompt,
        "answer": list(question.references),
        "grader": question.grader,
    }
    if question.choices:
        fields["choices"] = list(question.choices)
    return fields


def questions_by_prompt(questions: Iterable[Question]) -> dict[str, Question]:
    """Questions keyed by the text a routing dataset stores for them: the raw query a suite
    kept in ``metadata["query"]`` (LLMRouter's multiple-choice prompts add the options), else
    the prompt asked."""
    out: dict[str, Question] = {}
    for q in questions:
        text = q.metadata.get("query") if isinstance(q.metadata.get("query"), str) else q.prompt
        out.setdefault(prompt_key(str(text)), q)
    return out


def anchor_pool(
    dataset: RoutingDataset,
    questions: Mapping[str, Question] | None = None,
    *,
    predicted: Any = None,
    size: int = POOL_SIZE,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """A stratified sample of the dataset's prompts, in the order to use them (module doc),
    at most ``size``.

    ``predicted`` (n, models) is the router's out-of-fold predicted quality (without it, the
    true scores' spread serves). Each row keeps the models' true ``scores`` on its prompt.
    ``questions`` (from :func:`questions_by_prompt`) attaches grading fields to the rows
    whose prompt it knows. Rows sharing a prompt text count once.
    """
    spread = informativeness(dataset.scores if predicted is None else predicted)
    rng = np.random.default_rng(seed)
    by_task: dict[str, list[int]] = {}
    seen: set[str] = set()
    for i in rng.permutation(len(dataset)):
        key = prompt_key(dataset.prompts[i])
        if key not in seen:
            seen.add(key)
            by_task.setdefault(dataset.tasks[i] or "", []).append(int(i))
    tasks: list[list[int]] = []
    for rows in by_task.values():
        # thirds by informativeness, each still in random order; the task's own sequence
        # takes from them in proportion, and tasks take turns in proportion in the pool
        ranks = np.argsort(np.argsort(spread[rows], kind="stable"), kind="stable")
        thirds = [
            [r for r, k in zip(rows, ranks, strict=True) if k * 3 // len(rows) == third]
            for third in range(3)
        ]
        tasks.append(_proportional([t for t in thirds if t], len(rows)))
    order = _proportional(tasks, size)
    pool = []
    for i in order:
        row: dict[str, Any] = {
            "id": dataset.ids[i],
            "prompt": dataset.prompts[i],
            "task": dataset.tasks[i],
            "informativeness": round(float(spread[i]), 4),
            "scores": {
                m: float(v)
                for m, v in zip(dataset.models, dataset.scores[i], strict=True)
                if np.isfinite(v)
            },
        }
        q = (questions or {}).get(prompt_key(dataset.prompts[i]))
        if q is not None:
            row |= question_fields(q)
        pool.append(row)
    return pool


def _proportional(groups: list[list[int]], limit: int) -> list[int]:
    """Interleave ``groups`` so that every prefix takes from each in proportion to its size:
    next is always the group furthest behind its share (the larger on a tie)."""
    total = sum(len(g) for g in groups)
    taken = [0] * len(groups)
    out: list[int] = []
    while len(out) < min(limit, total):
        step = len(out) + 1
        g = max(
            (k for k in range(len(groups)) if taken[k] < len(groups[k])),
            key=lambda k: (len(groups[k]) * step / total - taken[k], len(groups[k])),
        )
        out.append(groups[g][taken[g]])
        taken[g] += 1
    return out


def choose_anchors(
    pool: Sequence[Mapping[str, Any]], count: int, *, gradable: bool = False
) -> list[dict[str, Any]]:
    """The first ``count`` rows of the pool (those with grading fields, if ``gradable``)."""
    if count < 1:
        raise RoutingDataError(f"the anchor count must be at least 1, got {count}")
    rows = [dict(r) for r in pool if not gradable or "answer" in r]
    if gradable and not rows:
        raise RoutingDataError(
            "this router's anchor pool holds no reference answers, so its anchors cannot be "
            "graded: retrain it with `polyroute train ... --questions SUITE` (e.g. "
            "llmrouter:train), or run `polyroute router anchors`, bench and grade the anchors "
            "yourself, then `polyroute router add-model`"
        )
    if len(rows) < count:
        what = "gradable prompts" if gradable else "prompts"
        raise RoutingDataError(
            f"the anchor pool has {len(rows)} {what}; ask for at most {len(rows)} (--count)"
        )
    return rows[:count]


def anchor_line(row: Mapping[str, Any]) -> dict[str, Any]:
    """An anchors-file line: ``{"id", "prompt", "task"}``, plus the grading fields when known,
    in which case ``prompt`` is the text to ask (a bench suite line, ``bench/suites.py``)."""
    line: dict[str, Any] = {"id": row["id"], "prompt": row.get("ask", row["prompt"])}
    if row.get("task") is not None:
        line["task"] = row["task"]
    for field in QUESTION_FIELDS:
        if field in row:
            line[field] = row[field]
    return line


def write_anchors(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(anchor_line(row), ensure_ascii=False) + "\n")
