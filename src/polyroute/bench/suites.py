"""Finding a suite by name or path, and the user's own JSONL suites.

A suite is named ``scheme:arg`` (``bigbench:object_counting``, ``llmrouter:test/gsm8k``,
``jsonl:my_questions.jsonl``), by a registered name of its own, or by a path to a BIG-bench
``task.json`` or a ``.jsonl`` file. Named suites read the data directory: ``--data-dir``, else
``$POLYROUTE_DATA_DIR``, else ``../shared/data`` when it exists.

A user JSONL file holds one question a line::

    {"id": "q1", "prompt": "What is 2+2?", "answer": "4", "grader": "numeric"}
    {"id": "q2", "messages": [{"role": "user", "content": "Capital of France?"}],
     "answer": ["Paris", "Paris, France"], "grader": "contains", "task": "geo"}
    {"id": "q3", "prompt": "...", "choices": ["red", "blue"], "answer": "B", "grader": "choice"}
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from polyroute.bench import bigbench, llmrouter
from polyroute.bench.extract import LETTERS, normalize_text
from polyroute.bench.graders import compile_pattern
from polyroute.bench.questions import BenchError, Question, Suite, user_message
from polyroute.bench.registry import GRADERS, SUITES

DATA_DIR_ENV = "POLYROUTE_DATA_DIR"


def default_data_dir() -> Path | None:
    """``$POLYROUTE_DATA_DIR``, else ``../shared/data`` (from here or the source checkout)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    for candidate in (
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[4] / "shared" / "data",
    ):
        if candidate.is_dir():
            return candidate
    return None


def load_suite(spec: str, data_dir: Path | None = None) -> Suite:
    """Resolve one suite name or path to its questions."""
    spec = spec.strip()
    path = Path(spec).expanduser()
    if path.exists():
        return load_path(path)
    scheme, sep, arg = spec.partition(":")
    if sep and scheme in SUITES:
        return SUITES.get(scheme)(arg, data_dir)
    if spec.endswith((".json", ".jsonl")):
        return load_path(path)
    hint = "" if sep else " (or a path to a task.json or .jsonl file)"
    raise BenchError(
        f"unknown suite {spec!r}: name it scheme:name with a scheme of "
        f"{', '.join(SUITES.names())}{hint}, e.g. bigbench:arithmetic/1_digit_addition"
    )


def load_suites(
    specs: list[str],
    data_dir: Path | None = None,
    *,
    limit: int | None = None,
    seed: int | None = None,
) -> Suite:
    """Several suites as one; ``limit`` keeps that many questions of each (a seeded sample
    when ``seed`` is given, else the first ones)."""
    parts = [load_suite(s, data_dir) for s in specs]
    questions: list[Question] = []
    for suite in parts:
        picked = list(suite.questions)
        if seed is not None:
            random.Random(seed).shuffle(picked)
        if limit is not None:
            picked = picked[:limit]
        questions.extend(picked)
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise BenchError(f"question id {q.id!r} appears twice: list each suite once")
        seen.add(q.id)
    if len(parts) == 1:
        return Suite(parts[0].name, questions, parts[0].description, parts[0].notes)
    return Suite(
        name=",".join(s.name for s in parts),
        questions=questions,
        notes=tuple(n for s in parts for n in s.notes),
    )


def list_suites(data_dir: Path | None) -> list[str]:
    """The named suites found in the data directory (plus registered names without data)."""
    names = [f"bigbench:{t}" for t in bigbench.list_tasks(data_dir)]
    if data_dir is not None:
        names += [
            f"llmrouter:{p.stem.removeprefix('default_query_')}"
            for p in sorted((data_dir / llmrouter.QUERY_DIR).glob("default_query_*.jsonl"))
        ]
    builtin = {"bigbench", "llmrouter", "jsonl"}
    names += [n for n in SUITES.names() if n not in builtin]
    return names


def load_path(path: Path) -> Suite:
    """A BIG-bench ``task.json`` (or its folder), an LLMRouter query file, or a user JSONL file."""
    if path.is_dir():
        path = path / "task.json"
    if not path.is_file():
        raise BenchError(f"suite file {path} does not exist")
    if path.suffix == ".json":
        return bigbench.load_task_file(path)
    first = _first_row(path)
    if first is not None and llmrouter.looks_like_query_file(first):
        return llmrouter.load_query_file(path)
    return load_user_jsonl(path)


@SUITES.register("jsonl")
def _jsonl_scheme(arg: str, data_dir: Path | None) -> Suite:
    return load_path(Path(arg).expanduser())


def _first_row(path: Path) -> dict[str, Any] | None:
    with path.open() as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    return None
                return row if isinstance(row, dict) else None
    return None


class _UserRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | int | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    answer: str | int | float | list[str | int | float]
    grader: str = "exact"
    choices: list[str] | None = None
    task: str | None = None
    metadata: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_prompt(self) -> _UserRow:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' (text) or 'messages' (chat messages)")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
        return self


def load_user_jsonl(path: Path) -> Suite:
    """``{"id", "prompt" | "messages", "answer", "grader", "choices"?, "task"?}`` per line."""
    questions: list[Question] = []
    ids: set[str] = set()
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = _UserRow.model_validate_json(line)
            except ValidationError as e:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}"
                    for err in e.errors()
                )
                raise BenchError(
                    f"{where}: {problems} (a line is "
                    f'{{"id", "prompt" or "messages", "answer", "grader"}})'
                ) from None
            q = _user_question(row, where=where, default_id=f"{path.stem}:{lineno}", task=path.stem)
            if q.id in ids:
                raise BenchError(f"{where}: id {q.id!r} is used twice in the file")
            ids.add(q.id)
            questions.append(q)
    if not questions:
        raise BenchError(f"{path} holds no questions")
    return Suite(name=path.stem, questions=questions)


def _user_question(row: _UserRow, *, where: str, default_id: str, task: str) -> Question:
    if row.grader not in GRADERS:
        raise BenchError(
            f"{where}: unknown grader {row.grader!r}; known: {', '.join(GRADERS.names())} "
            f"(register your own with polyroute.bench.GRADERS)"
        )
    answers = row.answer if isinstance(row.answer, list) else [row.answer]
    references = tuple(str(a) for a in answers)
    choices = tuple(row.choices or ())
    if row.grader in ("choice", "mc"):
        if not choices:
            raise BenchError(f"{where}: grader {row.grader!r} needs 'choices' (the options)")
        references = tuple(_option_text(r, choices, where=where) for r in references)
    if row.grader == "regex":
        for r in references:
            try:
                compile_pattern(r)
            except BenchError as e:
                raise BenchError(f"{where}: {e.message}") from None
    messages = user_message(row.prompt) if row.prompt is not None else tuple(row.messages or ())
    return Question(
        id=str(row.id) if row.id is not None else default_id,
        messages=messages,
        references=references,
        grader=row.grader,
        task=row.task or task,
        choices=choices,
        metadata=row.metadata,
    )


def _option_text(answer: str, choices: tuple[str, ...], *, where: str) -> str:
    """A multiple-choice answer given as a letter ("B") or as the option's text."""
    norm = [normalize_text(c) for c in choices]
    if normalize_text(answer) in norm:
        return choices[norm.index(normalize_text(answer))]
    label = answer.strip().strip("()").upper()
    if len(label) == 1 and label in LETTERS[: len(choices)]:
        return choices[LETTERS.index(label)]
    raise BenchError(f"{where}: answer {answer!r} is neither an option's letter nor its text")
