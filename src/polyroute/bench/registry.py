"""The bench's two registries: suites (by scheme) and graders (by name).

Built-ins register here exactly as third parties do::

    from polyroute.bench import GRADERS, Question

    @GRADERS.register("yes_no")
    def yes_no(answer: str, question: Question) -> float:
        return float(answer.strip().lower().startswith(question.references[0].lower()))

or through an entry point in the group ``polyroute.graders`` (``polyroute.suites`` for suite
loaders). A suite loader is called with the part of the suite name after ``scheme:`` and the
data directory, e.g. ``bigbench:arithmetic/1_digit_addition`` calls the ``bigbench`` loader
with ``"arithmetic/1_digit_addition"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from polyroute.bench.questions import Grader, Suite
from polyroute.registry import Registry


class SuiteLoader(Protocol):
    """Builds a suite from its argument (the text after ``scheme:``) and the data directory."""

    def __call__(self, arg: str, data_dir: Path | None, /) -> Suite: ...


SUITES: Registry[SuiteLoader] = Registry("suites")
GRADERS: Registry[Grader] = Registry("graders")
