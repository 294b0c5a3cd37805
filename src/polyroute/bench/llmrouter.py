"""LLMRouter's query files as suites: ``llmrouter:test``, ``llmrouter:train/gsm8k+mmlu``.

Rows are ``{"task_name", "query", "ground_truth", "metric", "choices"}``; ``choices`` is a
Python literal in a string (a list of options, or ``{"text": [...], "label(s)": [...]}``).
The metric picks the grader. Code tasks (``code_eval``: mbpp, human_eval) are left out:
grading them runs generated code, which needs a sandbox polyroute does not ship.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from polyroute.bench.bigbench import multiple_choice_prompt
from polyroute.bench.extract import LETTERS, normalize_text
from polyroute.bench.questions import BenchError, Question, Suite, user_message
from polyroute.bench.registry import SUITES

QUERY_DIR = Path("llmrouter/data/example_data/query_data")
METRIC_GRADERS = {
    "em_mc": "choice",
    "GSM8K": "numeric",
    "MATH": "math",
    "f1_score": "f1",
    "commongen_coverage": "coverage",
}
UNSUPPORTED_METRICS = {"code_eval": "code questions need a sandbox to grade"}


@SUITES.register("llmrouter")
def load_llmrouter(arg: str, data_dir: Path | None) -> Suite:
    """``llmrouter:SPLIT[/TASK+TASK...]`` from ``default_query_SPLIT.jsonl`` in the data dir."""
    split, _, tasks = arg.partition("/")
    split = split or "test"
    if data_dir is None:
        raise BenchError(
            "llmrouter suites are read from a data directory: pass --data-dir DIR "
            "(the folder that holds llmrouter/) or set POLYROUTE_DATA_DIR"
        )
    path = data_dir / QUERY_DIR / f"default_query_{split}.jsonl"
    if not path.is_file():
        raise BenchError(
            f"llmrouter: no split {split!r} ({path} does not exist); use test or train"
        )
    wanted = {t for t in tasks.split("+") if t}
    return load_query_file(
        path, tasks=wanted, name=f"llmrouter:{arg or split}", prefix=f"llmrouter:{split}"
    )


def looks_like_query_file(first_row: dict[str, Any]) -> bool:
    return {"task_name", "query", "ground_truth"} <= first_row.keys()


def load_query_file(
    path: Path, *, tasks: set[str] | None = None, name: str | None = None, prefix: str | None = None
) -> Suite:
    """Load an LLMRouter query JSONL file; ``tasks`` keeps only those task names."""
    prefix = prefix or path.stem
    questions: list[Question] = []
    skipped: dict[str, int] = {}
    seen_tasks: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines: U+2028 is data
    except OSError as e:
        raise BenchError(f"cannot read {path}: {e.strerror}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise BenchError(f"{path}:{lineno}: not valid JSON: {e}") from None
        if not isinstance(row, dict) or not looks_like_query_file(row):
            raise BenchError(f"{path}:{lineno}: needs task_name, query and ground_truth")
        task = str(row["task_name"])
        seen_tasks.add(task)
        if tasks and task not in tasks:
            continue
        metric = str(row.get("metric", ""))
        if metric in UNSUPPORTED_METRICS:
            skipped[metric] = skipped.get(metric, 0) + 1
            continue
        questions.append(_question(row, f"{prefix}:{lineno}", where=f"{path}:{lineno}"))
    if tasks and (unknown := tasks - seen_tasks):
        raise BenchError(
            f"{path}: no task {', '.join(sorted(unknown))}; tasks: {', '.join(sorted(seen_tasks))}"
        )
    notes = tuple(
        f"left out {n} {metric} questions ({UNSUPPORTED_METRICS[metric]})"
        for metric, n in skipped.items()
    )
    return Suite(name=name or path.stem, questions=questions, notes=notes)


def _question(row: dict[str, Any], qid: str, *, where: str) -> Question:
    task, query, truth = str(row["task_name"]), str(row["query"]), str(row["ground_truth"])
    metric = str(row.get("metric", ""))
    grader = METRIC_GRADERS.get(metric, "exact")
    choices: tuple[str, ...] = ()
    references = (truth,)
    text = query
    if grader == "choice":
        choices, labels = parse_choices(row.get("choices"), where=where)
        references = (_correct_option(truth, choices, labels, where=where),)
        text = multiple_choice_prompt(query, choices)
    elif grader == "coverage":
        text = f"Write one sentence that uses all of these words: {query}"
    return Question(
        id=qid,
        messages=user_message(text),
        references=references,
        grader=grader,
        task=task,
        choices=choices,
        # The raw query is what LLMRouter's routing data stores: anchors match on it.
        metadata={"query": query},
    )


def parse_choices(raw: Any, *, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Options and their labels from a list or a ``{"text": [...], "label": [...]}`` dict
    (either possibly written as a Python literal); labels default to A, B, C..."""
    value = raw
    if isinstance(raw, str):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise BenchError(f"{where}: 'choices' is not a list or dict literal") from None
    labels: Any = None
    if isinstance(value, dict):
        labels = value.get("label", value.get("labels"))
        value = value.get("text")
    if not isinstance(value, list | tuple) or not value:
        raise BenchError(f"{where}: multiple-choice row without options in 'choices'")
    if len(value) > len(LETTERS):
        raise BenchError(f"{where}: more than {len(LETTERS)} options")
    if not isinstance(labels, list | tuple) or len(labels) != len(value):
        labels = LETTERS[: len(value)]
    return tuple(str(v).strip() for v in value), tuple(str(x).strip() for x in labels)


def _correct_option(
    truth: str, choices: tuple[str, ...], labels: tuple[str, ...], *, where: str
) -> str:
    label = truth.strip().strip("()")
    if label in labels:
        return choices[labels.index(label)]
    if len(label) == 1 and label.upper() in LETTERS[: len(choices)]:
        return choices[LETTERS.index(label.upper())]
    norm = [normalize_text(c) for c in choices]
    if normalize_text(truth) in norm:
        return choices[norm.index(normalize_text(truth))]
    raise BenchError(f"{where}: ground_truth {truth!r} is neither an option's letter nor its text")
