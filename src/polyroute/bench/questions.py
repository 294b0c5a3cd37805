"""The bench's data types: a question with its reference answers, a suite, a grader.

A *suite* is a list of questions; each question names the *grader* that scores an answer
against its references (a float in ``[0, 1]``: 0/1 for most graders, fractional for F1 and
coverage). Graders are plain functions registered in :data:`polyroute.bench.GRADERS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from polyroute.errors import PolyrouteError
from polyroute.routing.prompt import flatten_messages

Message = Mapping[str, Any]


class BenchError(PolyrouteError):
    """A suite, grader or results file cannot be used; the message names the fix."""

    code = "bench_error"


@dataclass(frozen=True, slots=True)
class Question:
    """One prompt with what counts as a right answer."""

    #: Unique within a run (suites prefix it with their own name).
    id: str
    #: The OpenAI chat messages sent to each model.
    messages: tuple[Message, ...]
    #: Acceptable answers; for multiple choice, the text of the correct option(s).
    references: tuple[str, ...]
    #: Name of the grader in :data:`polyroute.bench.GRADERS`.
    grader: str
    #: The task the question belongs to (e.g. ``arithmetic/1_digit_addition``, ``gsm8k``).
    task: str
    #: Multiple-choice options, in the order they were shown (labelled A, B, C, ...).
    choices: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The prompt as text: a lone user message as is, otherwise ``role: content`` lines."""
        return flatten_messages(self.messages)


@dataclass(frozen=True, slots=True)
class Suite:
    """A named list of questions."""

    name: str
    questions: list[Question]
    description: str = ""
    #: What the loader left out and why (e.g. code questions that need a sandbox).
    notes: tuple[str, ...] = ()


class Grader(Protocol):
    """Scores ``answer`` against ``question.references``: 1.0 right, 0.0 wrong (or between).

    A grader may be ``async`` (return an awaitable), as the LLM judge is.
    """

    def __call__(self, answer: str, question: Question, /) -> float | Awaitable[float]: ...


def user_message(text: str) -> tuple[Message, ...]:
    return ({"role": "user", "content": text},)
