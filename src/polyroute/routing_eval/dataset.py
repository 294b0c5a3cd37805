"""The routing dataset: prompts, and each model's true quality (and cost) on each of them.

On disk it is JSONL, one prompt a line::

    {"id": "gsm8k-17", "prompt": "text" | [chat messages],
     "scores": {"model-a": 1.0, "model-b": 0.0},      # in [0, 1]; a model may be absent
     "costs": {"model-a": 0.00042, "model-b": 0.0001},  # optional: USD for this prompt
     "task": "gsm8k"}                                   # optional

In memory it is a :class:`RoutingDataset` of aligned arrays. A malformed line is a
:class:`RoutingDataError` naming the file, the line and what is wrong; no row is ever
dropped silently (the helpers that remove rows say so in their names).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyroute.errors import PolyrouteError
from polyroute.routing.prompt import flatten_messages

FloatArray = NDArray[np.float64]

# ``details`` (per-model answers, tokens, latency) is what `polyroute bench` adds: kept in
# the file for people, ignored for routing.
_FIELDS = ("id", "prompt", "scores", "costs", "task", "details")


class RoutingDataError(PolyrouteError):
    """A routing dataset (or a file being imported into one) cannot be used as it is."""

    code = "routing_data_error"


def prompt_key(text: str) -> str:
    """The text two prompts are compared by: whitespace runs collapsed, ends stripped."""
    return " ".join(text.split())


@dataclass(frozen=True, eq=False)
class RoutingDataset:
    """Prompts × models: true quality (NaN where a model has no score) and cost per prompt."""

    ids: list[str]
    prompts: list[str]
    models: list[str]
    #: (n_prompts, n_models) quality in [0, 1]; NaN where the model has no score.
    scores: FloatArray
    #: (n_prompts, n_models) USD for that prompt; NaN where unknown; None when no cost at all.
    costs: FloatArray | None
    tasks: list[str | None]

    def __post_init__(self) -> None:
        n, m = len(self.ids), len(self.models)
        if len(self.prompts) != n or len(self.tasks) != n:
            raise ValueError("ids, prompts and tasks must have the same length")
        if self.scores.shape != (n, m):
            raise ValueError(f"scores has shape {self.scores.shape}, expected {(n, m)}")
        if self.costs is not None and self.costs.shape != (n, m):
            raise ValueError(f"costs has shape {self.costs.shape}, expected {(n, m)}")
        if len(set(self.models)) != m:
            raise ValueError("model names must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_all_scores(self) -> bool:
        return not bool(np.isnan(self.scores).any())

    @property
    def has_all_costs(self) -> bool:
        return self.costs is not None and not bool(np.isnan(self.costs).any())

    # -- row and column selection -------------------------------------------------------

    def take(self, rows: Sequence[int] | NDArray[np.intp]) -> RoutingDataset:
        """The dataset restricted to ``rows`` (in that order)."""
        idx = np.asarray(rows, dtype=np.intp)
        return RoutingDataset(
            ids=[self.ids[i] for i in idx],
            prompts=[self.prompts[i] for i in idx],
            models=list(self.models),
            scores=self.scores[idx],
            costs=None if self.costs is None else self.costs[idx],
            tasks=[self.tasks[i] for i in idx],
        )

    def dedupe(self) -> RoutingDataset:
        """Keep the first row of each prompt text (compared by :func:`prompt_key`)."""
        seen: set[str] = set()
        keep: list[int] = []
        for i, text in enumerate(self.prompts):
            key = prompt_key(text)
            if key not in seen:
                seen.add(key)
                keep.append(i)
        return self.take(keep)

    def without_prompts_in(self, other: RoutingDataset | Iterable[str]) -> RoutingDataset:
        """Drop the rows whose prompt also occurs in ``other`` (train/test overlap)."""
        texts = other.prompts if isinstance(other, RoutingDataset) else other
        banned = {prompt_key(t) for t in texts}
        return self.take([i for i, t in enumerate(self.prompts) if prompt_key(t) not in banned])

    def subset_models(self, models: Sequence[str]) -> RoutingDataset:
        """Only ``models``' columns, in that order; an unknown name is an error."""
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise RoutingDataError(
                f"model(s) {', '.join(map(repr, unknown))} not in the dataset; "
                f"it has: {', '.join(self.models)}"
            )
        cols = np.array([self.models.index(m) for m in models], dtype=np.intp)
        return RoutingDataset(
            ids=list(self.ids),
            prompts=list(self.prompts),
            models=list(models),
            scores=self.scores[:, cols],
            costs=None if self.costs is None else self.costs[:, cols],
            tasks=list(self.tasks),
        )

    def split(self, test_fraction: float, seed: int = 0) -> tuple[RoutingDataset, RoutingDataset]:
        """(train, test): ``test_fraction`` of each task's rows, drawn at random, go to test.

        Per task, so that a small task is not left out of either side; rows sharing a
        prompt text stay on the same side, so that the test set is never seen in training.
        """
        if not 0.0 < test_fraction < 1.0:
            raise RoutingDataError(f"the test fraction must lie in (0, 1), got {test_fraction}")
        rng = np.random.default_rng(seed)
        by_task: dict[str, dict[str, list[int]]] = {}
        for i, (task, text) in enumerate(zip(self.tasks, self.prompts, strict=True)):
            by_task.setdefault(task or "", {}).setdefault(prompt_key(text), []).append(i)
        test: list[int] = []
        for task in sorted(by_task):
            groups = list(by_task[task].values())
            order = rng.permutation(len(groups))
            n_test = round(test_fraction * len(groups))
            test += [i for g in order[:n_test] for i in groups[g]]
        chosen = set(test)
        train = [i for i in range(len(self)) if i not in chosen]
        return self.take(train), self.take(sorted(test))

    def with_costs(self, costs: FloatArray) -> RoutingDataset:
        """The same rows with ``costs`` replaced."""
        return RoutingDataset(
            ids=self.ids,
            prompts=self.prompts,
            models=self.models,
            scores=self.scores,
            costs=costs,
            tasks=self.tasks,
        )

    # -- files ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> RoutingDataset:
        """Read a routing JSONL file; the first malformed line raises :class:`RoutingDataError`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise RoutingDataError(f"{path}: cannot read: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise RoutingDataError(f"{path}: not UTF-8 text ({e.reason})") from None
        rows: list[Row] = []
        seen_ids: dict[str, int] = {}
        # Split on "\n" only: str.splitlines() would also split inside strings at U+2028.
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RoutingDataError(f"{where}: not valid JSON ({e.msg})") from None
            row = parse_row(obj, where)
            if row.id in seen_ids:
                raise RoutingDataError(
                    f"{where}: id {row.id!r} already used on line {seen_ids[row.id]}; "
                    "ids must be unique"
                )
            seen_ids[row.id] = lineno
            rows.append(row)
        if not rows:
            raise RoutingDataError(f"{path}: no rows (expected one JSON object a line)")
        return from_rows(rows)

    def save(self, path: str | Path) -> None:
        """Write JSONL; NaN scores and costs are left out of their row's dicts."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for i in range(len(self)):
                obj: dict[str, Any] = {
                    "id": self.ids[i],
                    "prompt": self.prompts[i],
                    "scores": _present(self.models, self.scores[i]),
                }
                if self.costs is not None:
                    costs = _present(self.models, self.costs[i])
                    if costs:
                        obj["costs"] = costs
                if self.tasks[i] is not None:
                    obj["task"] = self.tasks[i]
                line = json.dumps(obj, ensure_ascii=False)
                # Escaped so that line-splitting tools that honour U+2028/9 keep one row a line.
                line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
                f.write(line + "\n")


@dataclass(frozen=True, slots=True)
class Row:
    """One validated line: what importers build and :func:`from_rows` assembles."""

    id: str
    prompt: str
    scores: dict[str, float]
    costs: dict[str, float]
    task: str | None = None


def parse_row(obj: Any, where: str) -> Row:
    """Validate one decoded JSONL object; ``where`` (``file:line``) prefixes every error."""
    if not isinstance(obj, dict):
        raise RoutingDataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    extra = sorted(set(obj) - set(_FIELDS))
    if extra:
        raise RoutingDataError(
            f"{where}: unknown field(s) {', '.join(map(repr, extra))}; "
            f"allowed: {', '.join(_FIELDS)}"
        )
    id_ = obj.get("id")
    if not isinstance(id_, str) or not id_:
        raise RoutingDataError(f"{where}: 'id' must be a non-empty string, got {id_!r}")
    prompt = _parse_prompt(obj.get("prompt"), where)
    scores = _number_map(obj.get("scores"), "scores", where, upper=1.0)
    if not scores:
        raise RoutingDataError(f"{where}: 'scores' must name at least one model")
    costs = _number_map(obj.get("costs", {}), "costs", where, upper=None)
    stray = [m for m in costs if m not in scores]
    if stray:
        raise RoutingDataError(
            f"{where}: 'costs' names {', '.join(map(repr, stray))} with no score on this line"
        )
    task = obj.get("task")
    if task is not None and not isinstance(task, str):
        raise RoutingDataError(f"{where}: 'task' must be a string, got {task!r}")
    return Row(id=id_, prompt=prompt, scores=scores, costs=costs, task=task)


def from_rows(rows: Sequence[Row]) -> RoutingDataset:
    """Assemble rows; models are ordered by first appearance, absent entries are NaN."""
    models: dict[str, int] = {}
    for row in rows:
        for m in row.scores:
            models.setdefault(m, len(models))
    scores = np.full((len(rows), len(models)), np.nan)
    has_costs = any(row.costs for row in rows)
    costs = np.full((len(rows), len(models)), np.nan) if has_costs else None
    for i, row in enumerate(rows):
        for m, v in row.scores.items():
            scores[i, models[m]] = v
        if costs is not None:
            for m, v in row.costs.items():
                costs[i, models[m]] = v
    return RoutingDataset(
        ids=[r.id for r in rows],
        prompts=[r.prompt for r in rows],
        models=list(models),
        scores=scores,
        costs=costs,
        tasks=[r.task for r in rows],
    )


def _parse_prompt(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        if not all("content" in m for m in value):
            raise RoutingDataError(f"{where}: every chat message in 'prompt' needs a 'content'")
        return flatten_messages(value)
    raise RoutingDataError(
        f"{where}: 'prompt' must be a string or a non-empty list of chat messages "
        f'({{"role", "content"}}), got {type(value).__name__}'
    )


def _number_map(value: Any, name: str, where: str, *, upper: float | None) -> dict[str, float]:
    """``{model: number}``; ``null`` values mean 'not known' and are left out."""
    if not isinstance(value, dict):
        raise RoutingDataError(f"{where}: {name!r} must be an object {{model: number}}")
    out: dict[str, float] = {}
    for model, v in value.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise RoutingDataError(f"{where}: {name}[{model!r}] must be a number, got {v!r}")
        if v < 0 or (upper is not None and v > upper):
            bound = f"in [0, {upper:g}]" if upper is not None else ">= 0"
            raise RoutingDataError(f"{where}: {name}[{model!r}] = {v!r} is not {bound}")
        out[model] = float(v)
    return out


def _present(models: Sequence[str], values: FloatArray) -> dict[str, float]:
    return {m: float(v) for m, v in zip(models, values, strict=True) if not math.isnan(v)}
