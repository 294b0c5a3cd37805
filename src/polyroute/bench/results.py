"""The answer log (append-only, one line per question and model) and the results file.

The runner appends every final answer to the *answer log* and flushes it at once, so an
interrupted run loses nothing it was told, and a re-run skips what the log already holds.
The *results file* is rebuilt from the log: one line per prompt, directly a routing dataset::

    {"id", "prompt", "task", "scores": {model: grade}, "costs": {model: cost},
     "details": {model: {"answer", "input_tokens", "output_tokens", "latency_s", "ttft_s",
                         "cost_usd", "error"?}}}
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from polyroute.bench.questions import BenchError, Question


class CostMeasure(StrEnum):
    """What goes into a row's ``costs``: the same unit for every model of a file."""

    USD = "usd"
    LATENCY = "latency"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's final answer to one question, as the log stores it."""

    qid: str
    model: str
    answer: str
    grade: float
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float
    ttft_s: float | None
    cost_usd: float | None
    #: Fingerprint of the messages asked: a changed prompt is asked again.
    prompt_sha: str
    task: str = ""
    #: Set when the upstream refused the request for good (it then counts as wrong).
    error: str | None = None
    attempts: int = 1
    ts: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def cost(self, measure: CostMeasure) -> float | None:
        if measure is CostMeasure.USD:
            return self.cost_usd
        if measure is CostMeasure.LATENCY:
            return round(self.latency_s, 6)
        return None if self.output_tokens is None else float(self.output_tokens)


def prompt_fingerprint(question: Question) -> str:
    text = json.dumps(list(question.messages), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def log_path_for(results: Path) -> Path:
    """``results.jsonl`` keeps its answers in ``results.answers.jsonl`` beside it."""
    stem = results.name.removesuffix(".jsonl")
    return results.with_name(f"{stem}.answers.jsonl")


class AnswerLog:
    """The per-run answer log: read what is done, append what gets done (flushed each time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_lines = 0
        self._file: IO[str] | None = None

    def load(self) -> dict[tuple[str, str], Answer]:
        """The logged answers by (question id, model); the latest line wins.

        A line cut short by a crash is ignored and counted in :attr:`torn_lines`; its
        answer is asked again.
        """
        done: dict[tuple[str, str], Answer] = {}
        if not self.path.exists():
            return done
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    answer = Answer.from_dict(json.loads(line))
                except (ValueError, TypeError, AttributeError):
                    self.torn_lines += 1
                    continue
                done[(answer.qid, answer.model)] = answer
        return done

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if needs_newline:  # never glue a new record onto a torn one
            self._file.write("\n")

    def append(self, answer: Answer) -> None:
        if self._file is None:
            self.open()
        assert self._file is not None
        self._file.write(answer.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> AnswerLog:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def build_rows(
    questions: Iterable[Question],
    answers: dict[tuple[str, str], Answer],
    models: Sequence[str],
    *,
    cost_measure: CostMeasure = CostMeasure.USD,
) -> list[dict[str, Any]]:
    """One routing-dataset row per question that every model has answered."""
    rows = []
    for q in questions:
        sha = prompt_fingerprint(q)
        got = [answers.get((q.id, m)) for m in models]
        if any(a is None or a.prompt_sha != sha for a in got):
            continue
        done = [a for a in got if a is not None]
        costs = {a.model: c for a in done if (c := a.cost(cost_measure)) is not None}
        rows.append(
            {
                "id": q.id,
                "prompt": q.prompt,
                "task": q.task,
                "scores": {a.model: a.grade for a in done},
                "costs": costs,
                "details": {a.model: _details(a) for a in done},
            }
        )
    return rows


def _details(a: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "answer": a.answer,
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "latency_s": round(a.latency_s, 6),
        "ttft_s": None if a.ttft_s is None else round(a.ttft_s, 6),
        "cost_usd": a.cost_usd,
    }
    if a.error:
        out["error"] = a.error
    return out


def write_results(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write the results file whole (to a temporary file, then renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_results(path: Path) -> list[dict[str, Any]]:
    """Read a results file, checking each row has an id and a ``scores`` mapping."""
    if not path.is_file():
        raise BenchError(f"results file {path} does not exist; make one with `polyroute bench`")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise BenchError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(row, dict) or not isinstance(row.get("scores"), dict):
                raise BenchError(
                    f"{path}:{lineno}: a results row needs 'scores': {{model: grade}} "
                    f"(is this an answer log? pass the --out file of `polyroute bench`)"
                )
            rows.append(row)
    if not rows:
        raise BenchError(f"results file {path} is empty")
    return rows
