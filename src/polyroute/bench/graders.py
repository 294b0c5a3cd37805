"""The built-in graders, registered in :data:`polyroute.bench.GRADERS` like any other.

=========  ==================================================================================
exact      the normalised answer equals a reference (case, whitespace, edge punctuation and
           articles ignored)
choice     multiple choice: a letter ("B", "(B)", "The answer is B.") or the option's text
           picks an option; right when it is a correct one (alias ``mc``)
numeric    GSM8K style: the answer's final number (after ``####``, in ``\\boxed{}``, else the
           last; "1,234", "$5", "5 dollars", "5." and "5.0" all read) equals a reference's
contains   a reference appears in the answer as whole words
regex      a reference, read as a Python regular expression, matches somewhere in the answer
f1         SQuAD token F1 against the best reference (fractional)
math       MATH style: the last ``\\boxed{}`` (else the final number) equals the reference's
coverage   CommonGen: the share of the reference's comma-separated concepts the answer uses
=========  ==================================================================================
"""

from __future__ import annotations

import functools
import re
from collections import Counter

from polyroute.bench.extract import (
    choice_index,
    contains_words,
    final_number,
    last_boxed,
    math_value,
    normalize_math,
    normalize_text,
    numbers_equal,
)
from polyroute.bench.questions import BenchError, Question
from polyroute.bench.registry import GRADERS


@GRADERS.register("exact")
def exact(answer: str, question: Question) -> float:
    """1.0 when the normalised answer equals one normalised reference."""
    norm = normalize_text(answer)
    return float(any(norm == normalize_text(r) for r in question.references))


@GRADERS.register("choice")
def choice(answer: str, question: Question) -> float:
    """1.0 when the option the answer picks is one of the correct options."""
    if not question.choices:
        raise BenchError(
            f"question {question.id}: grader 'choice' needs 'choices' (the options); "
            f"add them, or use grader 'exact'"
        )
    i = choice_index(answer, question.choices)
    if i is None:
        return 0.0
    picked = normalize_text(question.choices[i])
    return float(any(picked == normalize_text(r) for r in question.references))


GRADERS.add("mc", choice)


@GRADERS.register("numeric")
def numeric(answer: str, question: Question) -> float:
    """1.0 when the answer's final number equals a reference's final number."""
    got = final_number(answer)
    if got is None:
        return 0.0
    for ref in question.references:
        want = final_number(ref)
        if want is not None and numbers_equal(got, want):
            return 1.0
    return 0.0


@GRADERS.register("contains")
def contains(answer: str, question: Question) -> float:
    """1.0 when a reference appears in the answer as whole words (after normalisation)."""
    return float(any(contains_words(answer, r) for r in question.references))


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a reference regex, with an error that names the pattern."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise BenchError(
            f"grader 'regex': {pattern!r} is not a valid regular expression: {e}"
        ) from None


@GRADERS.register("regex")
def regex(answer: str, question: Question) -> float:
    """1.0 when a reference pattern matches anywhere in the answer (``re.search``)."""
    return float(any(compile_pattern(r).search(answer) for r in question.references))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token-overlap F1 between two texts."""
    got, want = normalize_text(answer).split(), normalize_text(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


@GRADERS.register("f1")
def f1(answer: str, question: Question) -> float:
    """Token F1 against the closest reference."""
    return max((token_f1(answer, r) for r in question.references), default=0.0)


def _math_answer(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    number = final_number(text)
    if number is None:
        return None
    return str(int(number)) if number.is_integer() else str(number)


@GRADERS.register("math")
def math(answer: str, question: Question) -> float:
    """1.0 when the answer's boxed (or final numeric) result equals the reference's."""
    got = _math_answer(answer)
    if got is None:
        return 0.0
    for ref in question.references:
        want = last_boxed(ref)
        if want is None:
            want = ref
        if normalize_math(got) == normalize_math(want):
            return 1.0
        a, b = math_value(got), math_value(want)
        if a is not None and b is not None and numbers_equal(a, b):
            return 1.0
    return 0.0


_SUFFIXES = ("ing", "ers", "er", "ed", "es", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@GRADERS.register("coverage")
def coverage(answer: str, question: Question) -> float:
    """The share of the reference's comma-separated concepts used in the answer (crude stems)."""
    concepts = {normalize_text(c) for r in question.references for c in r.split(",")}
    concepts.discard("")
    if not concepts:
        return 0.0
    used = {_stem(w) for w in normalize_text(answer).split()}
    hits = sum(all(_stem(w) in used for w in c.split()) for c in concepts)
    return hits / len(concepts)
