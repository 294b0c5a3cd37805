"""Pulling the answer out of a model's reply: normalised text, the final number, the chosen option.

These are pure functions on strings; :mod:`polyroute.bench.graders` turns them into graders.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from fractions import Fraction

_ARTICLES = re.compile(r"(?<!\S)(?:a|an|the)(?!\S)")
# Punctuation at the edge of a word ("Paris." "(B)" "Jr,") but not inside one ("3.5" "don't").
_EDGE_PUNCT = re.compile(r"(?<!\w)[^\w\s]+|[^\w\s]+(?!\w)")


def normalize_text(text: str) -> str:
    """Case-folded, articles and edge punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _EDGE_PUNCT.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


# ---------------------------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"(?<![\w/])(?P<sign>[-+\u2212])?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:/(?P<den>\d+)(?![/\d]))?"
)
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_NUMBER_WORD = re.compile(
    rf"\b(?:(?P<tens>{'|'.join(_TENS)})(?:[-\s](?P<unit1>{'|'.join(list(_UNITS)[1:10])}))?"
    rf"|(?P<unit>{'|'.join(_UNITS)}))\b",
    re.IGNORECASE,
)
_FINAL_MARKER = re.compile(r"####\s*(.*)$", re.DOTALL)
# "the answer is", "Answer:", "the answer to this problem is" (a few words in between)
_ANSWER_IS = re.compile(r"\banswer\b(?:\s+[\w'-]+){0,5}?\s*(?:\bis\b|:|=)\s*", re.IGNORECASE)


def find_numbers(text: str) -> list[tuple[int, float]]:
    """Every number in ``text`` with its position: digits ("1,234.5", "$5", "3/4") and words."""
    found: list[tuple[int, float]] = []
    for m in _NUMBER.finditer(text):
        value = float(m["num"].replace(",", ""))
        if m["den"]:
            den = int(m["den"])
            if den == 0:
                continue
            value = value / den
        if m["sign"] in ("-", "\u2212"):
            value = -value
        found.append((m.start(), value))
    for m in _NUMBER_WORD.finditer(text):
        if m["tens"]:
            value = _TENS[m["tens"].lower()] + (_UNITS[m["unit1"].lower()] if m["unit1"] else 0)
        else:
            value = _UNITS[m["unit"].lower()]
        found.append((m.start(), float(value)))
    found.sort()
    return found


def is_number_text(text: str) -> bool:
    """Whether ``text`` is just one number ("21", "1,000", "-2.5", "twenty-one")."""
    text = text.strip()
    return bool(_NUMBER.fullmatch(text) or _NUMBER_WORD.fullmatch(text))


def final_number(text: str) -> float | None:
    """The answer's number, GSM8K style: after ``####``, else in the last ``\\boxed{}``, else the
    first after the last "answer is" / "answer:", else the last number in the text."""
    marker = _FINAL_MARKER.search(text)
    if marker:
        text = marker.group(1)
    elif (boxed := last_boxed(text)) is not None:
        text = boxed
    else:
        said = list(_ANSWER_IS.finditer(text))
        if said and (numbers := find_numbers(text[said[-1].end() :])):
            return numbers[0][1]
    numbers = find_numbers(text)
    return numbers[-1][1] if numbers else None


def numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


# ---------------------------------------------------------------------------------- LaTeX


def last_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` (or ``\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


_LATEX_DROP = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\ |\$|\^\{?\\circ\}?|\\%|%|\s+")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\{?(-?\d+)\}?\{?(-?\d+)\}?")


def normalize_math(text: str) -> str:
    """A LaTeX answer in a canonical form: no spaces, ``$``, ``\\left``, ``\\text{}``, degrees."""
    text = _TEXT_CMD.sub(r"\1", text)
    text = _LATEX_DROP.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.rstrip(".").lower()


def math_value(text: str) -> float | None:
    """A number for a simple LaTeX answer (``\\frac{3}{4}``, ``-2.5``, ``1,000``), else None."""
    text = normalize_math(text)
    frac = _FRAC.fullmatch(text)
    if frac:
        den = int(frac.group(2))
        return float(Fraction(int(frac.group(1)), den)) if den else None
    m = _NUMBER.fullmatch(text)
    if not m:
        return None
    return find_numbers(text)[0][1]


# ---------------------------------------------------------------------------------- choices

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_STRONG_LETTER = (
    re.compile(r"answer\s*(?:is|:|=)?\s*(?:option\s*)?[\(\[]?([A-Z])\b(?![\w'])", re.IGNORECASE),
    re.compile(r"\boption\s*[\(\[]?([A-Z])\b(?![\w'])"),
    re.compile(r"\(([A-Z])\)"),
)
_LEADING_LETTER = re.compile(r"^\W*([A-Z])(?:[\.\):]|\s+[-\u2013\u2014]\s)")
_TRAILING_LETTER = re.compile(r"\b([A-Z])\W*$")


def choice_index(answer: str, choices: Sequence[str]) -> int | None:
    """Which option ``answer`` picks: a letter ("B", "(B)", "The answer is B.") or an option's text.

    Returns None when the answer names no option, or names several and says which one
    is meant nowhere.
    """
    n = len(choices)
    text = answer.strip()
    if not text or n == 0:
        return None
    valid = LETTERS[:n]

    def letter(c: str) -> int | None:
        c = c.upper()
        return valid.index(c) if c in valid else None

    norm_answer = normalize_text(text)
    norm_choices = [normalize_text(c) for c in choices]
    # 1. The whole answer is a letter ("b", "(B)", "B.") or exactly one option's text.
    bare = re.fullmatch(r"\W*([A-Za-z])\W*", text)
    if bare:
        return letter(bare.group(1))
    if norm_answer in norm_choices:
        return norm_choices.index(norm_answer)
    # 2. A letter said explicitly: "the answer is B", "Answer: (C)", "option D".
    for pattern in _STRONG_LETTER:
        for found in reversed(list(pattern.finditer(text))):
            c = found.group(1)
            if c.islower() and (pattern is not _STRONG_LETTER[0] or _word_after(text, found.end())):
                continue  # "the answer is a dog": an article, not option A
            if (i := letter(c)) is not None:
                return i
    # 3. "B. four" / "C) ..." at the start.
    lead = _LEADING_LETTER.match(text)
    if lead and (i := letter(lead.group(1))) is not None:
        return i
    # 4. The text of exactly one option, as whole words ("implausible" is not "plausible").
    mentioned = {i for i, c in enumerate(norm_choices) if c and _contains_words(norm_answer, c)}
    # An option inside a longer mentioned one ("new york" in "new york city") is no mention.
    mentioned = {
        i for i in mentioned
        if not any(j != i and _contains_words(norm_choices[j], norm_choices[i]) for j in mentioned)
    }  # fmt: skip
    if len(mentioned) == 1:
        return mentioned.pop()
    # 4b. Numeric options: the answer's final number names one ("Horses have 4 legs" -> "four").
    if not mentioned and (i := _numeric_choice(text, choices)) is not None:
        return i
    # 5. A capital letter closing the answer ("I'd pick D.").
    trail = _TRAILING_LETTER.search(text)
    if trail and (i := letter(trail.group(1))) is not None and not mentioned:
        return i
    return None


def _numeric_choice(answer: str, choices: Sequence[str]) -> int | None:
    value = final_number(answer)
    if value is None:
        return None
    hits = []
    for i, choice in enumerate(choices):
        numbers = find_numbers(choice)
        if len(numbers) == 1 and numbers_equal(numbers[0][1], value):
            hits.append(i)
    return hits[0] if len(hits) == 1 else None


def _word_after(text: str, pos: int) -> bool:
    return bool(re.match(r"\s+[a-z]", text[pos:]))


def _contains_words(haystack: str, needle: str) -> bool:
    return f" {needle} " in f" {haystack} "


def contains_words(answer: str, reference: str) -> bool:
    """Whether the normalised ``reference`` appears in the normalised ``answer`` as whole words."""
    ref = normalize_text(reference)
    return bool(ref) and _contains_words(normalize_text(answer), ref)
