"""BIG-bench tasks (``task.json`` with ``examples``) as suites: ``bigbench:TASK[/SUBTASK]``.

Each example has ``input`` and ``target`` (a string or a list of acceptable strings) and/or
``target_scores`` (option → score: multiple choice). The grader follows the task's
``preferred_score``: multiple choice → ``choice``; exact match on numbers → ``numeric`` (so
"0 + 0 = 0" counts); other exact matches → ``exact``; anything else (ROUGE, BLEU) →
``contains``. Multiple-choice options are always listed in the prompt, lettered A, B, C...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyroute.bench.extract import LETTERS, is_number_text
from polyroute.bench.questions import BenchError, Question, Suite, user_message
from polyroute.bench.registry import SUITES


def bigbench_root(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise BenchError(
            "BIG-bench suites are read from a data directory: pass --data-dir DIR "
            "(the folder that holds bigbench/) or set POLYROUTE_DATA_DIR"
        )
    return data_dir / "bigbench"


def list_tasks(data_dir: Path | None) -> list[str]:
    """Every BIG-bench task with examples under the data directory, as ``task[/subtask]``."""
    if data_dir is None or not (data_dir / "bigbench").is_dir():
        return []
    root = data_dir / "bigbench"
    return sorted(
        p.parent.relative_to(root).as_posix() for p in root.rglob("task.json") if _has_examples(p)
    )


def _has_examples(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("examples"))
    except (OSError, ValueError, AttributeError):
        return False


@SUITES.register("bigbench")
def load_bigbench(arg: str, data_dir: Path | None) -> Suite:
    """``bigbench:arithmetic/1_digit_addition``; a task with subtasks loads all of them."""
    root = bigbench_root(data_dir)
    task = arg.strip("/")
    folder = root / task
    if not task or not (folder / "task.json").is_file():
        known = ", ".join(list_tasks(data_dir)) or f"none found under {root}"
        what = "name a task" if not task else f"no task {task!r} under {root}"
        raise BenchError(f"bigbench: {what}; known tasks: {known}")
    path = folder / "task.json"
    if _has_examples(path):
        return load_task_file(path, task=task)
    subtasks = [t for t in list_tasks(data_dir) if t.startswith(f"{task}/")]
    if not subtasks:
        raise BenchError(f"bigbench: task {task!r} ({path}) has no examples and no subtasks")
    suites = [load_task_file(root / t / "task.json", task=t) for t in subtasks]
    return Suite(
        name=f"bigbench:{task}",
        questions=[q for s in suites for q in s.questions],
        description=f"{task}: {len(subtasks)} subtasks",
    )


def load_task_file(path: Path, *, task: str | None = None) -> Suite:
    """Load one BIG-bench ``task.json`` (a path anywhere)."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise BenchError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise BenchError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise BenchError(f"{path} is not a BIG-bench task: it needs a list under 'examples'")
    task = task or str(data.get("name") or path.parent.name)
    examples = data["examples"]
    # One grader per task: numeric only when every target of every example is a number.
    numeric = all(
        all(is_number_text(t) for t in targets_of(ex)) for ex in examples if isinstance(ex, dict)
    )
    questions = [
        _question(ex, data, task=task, index=i, path=path, numeric=numeric)
        for i, ex in enumerate(examples)
    ]
    return Suite(
        name=f"bigbench:{task}",
        questions=questions,
        description=str(data.get("description", "")),
    )


def targets_of(example: dict[str, Any]) -> list[str]:
    """``target`` as a list of strings, whether the file wrote a string, a number or a list."""
    target = example.get("target")
    if target is None:
        return []
    if isinstance(target, list):
        return [str(t) for t in target if t is not None and str(t).strip()]
    return [str(target)] if str(target).strip() else []


def _question(
    ex: Any, task_data: dict[str, Any], *, task: str, index: int, path: Path, numeric: bool
) -> Question:
    where = f"{path}: examples[{index}]"
    if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
        raise BenchError(f"{where} needs a string 'input'")
    targets = targets_of(ex)
    scores = ex.get("target_scores")
    if scores is not None and not (
        isinstance(scores, dict) and all(isinstance(v, int | float) for v in scores.values())
    ):
        raise BenchError(f"{where}: 'target_scores' must map each option to a number")
    if not targets and not scores:
        raise BenchError(f"{where} has neither 'target' nor 'target_scores'")
    preferred = str(task_data.get("preferred_score", ""))
    text = (
        "".join(str(task_data.get(k) or "") for k in ("task_prefix", "example_input_prefix"))
        + ex["input"]
    )
    text = text.strip()
    choices: tuple[str, ...] = ()
    if scores and (not targets or preferred == "multiple_choice_grade"):
        choices = tuple(str(k) for k in scores)
        if len(choices) > len(LETTERS):
            raise BenchError(f"{where}: more than {len(LETTERS)} options")
        best = max(scores.values())
        targets = [str(k) for k, v in scores.items() if v == best and v > 0]
        grader = "choice"
        text = multiple_choice_prompt(text, choices)
    elif numeric:
        grader = "numeric"
    elif preferred == "exact_str_match":
        grader = "exact"
    else:
        grader = "contains"
    return Question(
        id=f"bigbench:{task}:{index}",
        messages=user_message(text),
        references=tuple(targets),
        grader=grader,
        task=task,
        choices=choices,
    )


def multiple_choice_prompt(text: str, choices: tuple[str, ...]) -> str:
    """The question followed by its lettered options and how to answer."""
    options = "\n".join(f"{LETTERS[i]}. {c.strip()}" for i, c in enumerate(choices))
    return f"{text}\n\nOptions:\n{options}\n\nAnswer with the letter of the correct option."
