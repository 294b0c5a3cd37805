"""Graders on the answers models really give: commas, units, letters inside sentences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyroute.bench import GRADERS, BenchError, Question
from polyroute.bench.extract import choice_index, final_number, normalize_text
from polyroute.bench.questions import user_message


def q(*references: str, grader: str = "exact", choices: tuple[str, ...] = ()) -> Question:
    return Question(
        id="t:1",
        messages=user_message("?"),
        references=references,
        grader=grader,
        task="t",
        choices=choices,
    )


def grade(answer: str, question: Question) -> float:
    result = GRADERS.get(question.grader)(answer, question)
    assert isinstance(result, float)
    return result


# ----------------------------------------------------------------------------- exact


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("Paris", "Paris", 1.0),
        ("  paris.  ", "Paris", 1.0),
        ("The Eiffel Tower!", "Eiffel Tower", 1.0),
        ('"Sammy Davis, Jr."', "Sammy Davis, Jr", 1.0),
        ("an apple", "Apple", 1.0),
        ("3.5", "3.5", 1.0),
        ("35", "3.5", 0.0),  # a decimal point is not edge punctuation
        ("Paris, France", "Paris", 0.0),
        ("theater", "the ater", 0.0),  # articles go only as whole words
        ("", "Paris", 0.0),
    ],
)
def test_exact_ignores_case_whitespace_edge_punctuation_and_articles(
    answer: str, reference: str, expected: float
) -> None:
    assert grade(answer, q(reference)) == expected


def test_exact_accepts_any_of_several_references() -> None:
    assert grade("3", q("three", "3")) == 1.0


# ----------------------------------------------------------------------------- numeric


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("The total is 1,234.", "1234"),
        ("1234", "1,234"),
        ("It costs $5", "5"),
        ("5 dollars", "5"),
        ("She paid $5.", "5"),
        ("5.0", "5"),
        ("5.", "5"),
        ("-7", "-7"),
        ("0.5", ".5"),
        ("3/4 of the cake", "0.75"),
        ("First 3 + 4 = 7, then 7 * 2 = 14. So 14", "14"),
        ("The answer is 14, not 7", "14"),
        ("The answer to this classic math problem is 0. Then 0 and 7 are...", "0"),
        ("Hmm, the answer is 5. No wait: 6 + 2 = 8. The final answer is: 8 apples", "8"),
        ("x = \\boxed{42} (and 7 was a guess)", "42"),
        ("You have three instruments.", "3"),
        ("twenty-one", "21"),
        ("I think 12 apples, so #### 1,000", "1000"),
        ("60000/3 = 20000", "Blake gave $<<60000/3=20000>>20,000.\n#### 20,000"),
    ],
)
def test_numeric_reads_the_final_number_gsm8k_style(answer: str, reference: str) -> None:
    assert grade(answer, q(reference, grader="numeric")) == 1.0


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("The answer is 14, not 7", "7"),  # what follows "the answer is" wins
        ("The answer to this problem is 0. Adding 0 and 7 gives 7", "7"),
        ("First 3 + 4 = 7, then 7 * 2 = 14", "7"),  # otherwise the last number
        ("1,2345", "12345"),  # not a thousands separator
        ("no idea", "0"),
        ("12", "1.2"),
        ("", "1"),
    ],
)
def test_numeric_wrong_answers(answer: str, reference: str) -> None:
    assert grade(answer, q(reference, grader="numeric")) == 0.0


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_any_integer_written_with_thousands_commas_reads_back(n: int) -> None:
    assert final_number(f"The result is {n:,}.") == n


@given(st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False))
def test_decimals_read_back_with_units_and_trailing_period(d: object) -> None:
    text = f"It comes to ${d} dollars."
    value = final_number(text)
    assert value is not None and abs(value - float(str(d))) < 1e-9


# ----------------------------------------------------------------------------- choice

LEGS = ("two", "four", "six", "three", "one", "none")


@pytest.mark.parametrize(
    "answer",
    [
        "B",
        "b",
        "(B)",
        "B.",
        "The answer is B.",
        "the answer is (B) because horses are quadrupeds",
        "Answer: B",
        "B. four",
        "B) four",
        "four",
        "Four.",
        "Horses have four legs.",
        "Horses have 4 legs.",
        "I'd go with option B",
        "After thinking about it, I pick B",
    ],
)
def test_choice_reads_letters_in_sentences_and_option_text(answer: str) -> None:
    assert choice_index(answer, LEGS) == 1
    assert grade(answer, q("four", grader="choice", choices=LEGS)) == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "the answer is a dog",  # "a" is an article, not option A
        "It could be two or four",  # two options named, none chosen
        "G",  # no option G
        "I don't know",
    ],
)
def test_choice_does_not_guess(answer: str) -> None:
    assert choice_index(answer, LEGS) is None


def test_choice_whole_words_only() -> None:
    options = ("plausible", "implausible")
    assert choice_index("This is implausible.", options) == 1
    assert choice_index("Plausible", options) == 0
    assert choice_index("plausible, not implausible", options) is None


def test_choice_wrong_option_scores_zero() -> None:
    assert grade("A", q("four", grader="choice", choices=LEGS)) == 0.0


def test_choice_without_options_says_how_to_fix() -> None:
    with pytest.raises(BenchError, match="needs 'choices'"):
        grade("B", q("four", grader="choice"))


@given(st.integers(min_value=2, max_value=26), st.data())
def test_any_valid_letter_picks_its_option(n: int, data: st.DataObject) -> None:
    options = tuple(f"option number {i}" for i in range(n))
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    letter = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[i]
    for answer in (letter, f"({letter})", f"The answer is {letter}."):
        assert choice_index(answer, options) == i


# ----------------------------------------------------------------------------- others


def test_contains_matches_whole_words() -> None:
    assert grade("The language of the song is English.", q("English", grader="contains")) == 1.0
    assert grade("Englishman", q("English", grader="contains")) == 0.0
    assert grade("a parody of rock", q("comedy", "parody", grader="contains")) == 1.0


def test_regex_searches_the_answer() -> None:
    assert grade("Order #12345 shipped", q(r"#\d{5}\b", grader="regex")) == 1.0
    assert grade("Order #1234 shipped", q(r"#\d{5}\b", grader="regex")) == 0.0


def test_a_bad_regex_names_the_pattern() -> None:
    with pytest.raises(BenchError, match=r"'\(unclosed' is not a valid regular expression"):
        grade("x", q("(unclosed", grader="regex"))


def test_f1_is_fractional() -> None:
    assert grade("Sammy Davis Jr", q("Sammy Davis, Jr", grader="f1")) == 1.0
    assert 0.0 < grade("Davis", q("Sammy Davis, Jr", grader="f1")) < 1.0
    assert grade("nobody", q("Sammy Davis", grader="f1")) == 0.0


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("so the sum is \\boxed{494550}.", "the sum is $\\boxed{494550}$."),
        ("\\boxed{y = -2x + 1}", "equivalently, $\\boxed{y=-2x+1}.$"),
        ("\\boxed{\\dfrac{3}{4}}", "\\boxed{\\frac{3}{4}}"),
        ("\\boxed{0.75}", "\\boxed{\\frac34}"),
        ("The answer is 28", "28"),
        ("\\boxed{90^\\circ}", "\\boxed{90}"),
    ],
)
def test_math_compares_boxed_answers(answer: str, reference: str) -> None:
    assert grade(answer, q(reference, grader="math")) == 1.0


def test_math_wrong_answer() -> None:
    assert grade("\\boxed{494551}", q("\\boxed{494550}", grader="math")) == 0.0


def test_coverage_counts_concepts_used() -> None:
    question = q("dog, frisbee, catch", grader="coverage")
    assert grade("The dog catches a frisbee.", question) == 1.0
    assert grade("The dog sleeps.", question) == pytest.approx(1 / 3)


def test_mc_is_an_alias_of_choice() -> None:
    assert GRADERS.get("mc") is GRADERS.get("choice")


def test_a_user_grader_registers_like_the_built_ins() -> None:
    def shouted(answer: str, question: Question) -> float:
        return float(answer.isupper())

    GRADERS.add("test-shouted", shouted)
    assert "test-shouted" in GRADERS.names()
    assert grade("YES", q("", grader="test-shouted")) == 1.0


@given(st.text())
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(st.text(), st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_choice_index_never_fails_and_stays_in_range(answer: str, options: list[str]) -> None:
    i = choice_index(answer, options)
    assert i is None or 0 <= i < len(options)
