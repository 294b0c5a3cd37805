"""Suite loaders on the real shared data and on tiny fixtures, and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.bench_fakes import write_jsonl

from polyroute.bench import SUITES, BenchError, Question, Suite, load_suite, load_suites
from polyroute.bench.bigbench import targets_of
from polyroute.bench.suites import default_data_dir, list_suites

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")


def write_task(folder: Path, examples: list[dict[str, object]], **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.json"
    path.write_text(json.dumps({"name": folder.name, "examples": examples, **extra}))
    return path


# ----------------------------------------------------------------------------- BIG-bench


def test_target_is_normalised_to_a_list_of_strings() -> None:
    assert targets_of({"target": "3"}) == ["3"]
    assert targets_of({"target": ["three", "3"]}) == ["three", "3"]
    assert targets_of({"target": 7}) == ["7"]
    assert targets_of({"target": ["x", "", None]}) == ["x"]
    assert targets_of({}) == []


def test_bigbench_fixture_string_list_and_scores(tmp_path: Path) -> None:
    write_task(
        tmp_path / "bigbench" / "mini",
        [
            {"input": "Capital of France?", "target": "Paris"},
            {"input": "Two colours of the sky?", "target": ["blue", "grey"]},
            {"input": "Legs on a horse?", "target_scores": {"two": 0, "four": 1}},
            {"input": "What is 2 plus 2?", "target": "4"},
        ],
        preferred_score="exact_str_match",
    )
    suite = load_suite("bigbench:mini", tmp_path)
    paris, sky, legs, four = suite.questions
    assert (paris.references, paris.grader) == (("Paris",), "exact")
    assert sky.references == ("blue", "grey")
    assert (legs.grader, legs.choices, legs.references) == ("choice", ("two", "four"), ("four",))
    assert "A. two\nB. four" in legs.prompt
    assert four.grader == "exact"  # one grader per task: not every target is a number
    assert [q.id for q in suite.questions] == [f"bigbench:mini:{i}" for i in range(4)]


def test_bigbench_task_of_numbers_is_graded_numerically(tmp_path: Path) -> None:
    path = write_task(
        tmp_path / "count",
        [
            {"input": "How many?", "target": ["twenty-one", "21"]},
            {"input": "Sum?", "target": "1,000"},
        ],
        preferred_score="exact_str_match",
    )
    assert {q.grader for q in load_suite(str(path)).questions} == {"numeric"}


def test_bigbench_task_with_subtasks_loads_them_all(tmp_path: Path) -> None:
    root = tmp_path / "bigbench" / "maths"
    write_task(root, [])
    write_task(root / "add", [{"input": "1+1?", "target": "2"}])
    write_task(root / "sub", [{"input": "2-1?", "target": "1"}])
    suite = load_suite("bigbench:maths", tmp_path)
    assert [q.task for q in suite.questions] == ["maths/add", "maths/sub"]


def test_bigbench_unknown_task_lists_the_known_ones(tmp_path: Path) -> None:
    write_task(tmp_path / "bigbench" / "mini", [{"input": "?", "target": "x"}])
    with pytest.raises(BenchError, match=r"no task 'nope'.*known tasks: mini"):
        load_suite("bigbench:nope", tmp_path)


def test_bigbench_bad_example_names_file_and_index(tmp_path: Path) -> None:
    path = write_task(tmp_path / "bad", [{"input": "ok", "target": "1"}, {"input": "no target"}])
    with pytest.raises(BenchError, match=r"examples\[1\] has neither 'target' nor 'target_scores'"):
        load_suite(str(path))


def test_bigbench_without_a_data_dir_says_how_to_give_one() -> None:
    with pytest.raises(BenchError, match="--data-dir"):
        SUITES.get("bigbench")("arithmetic", None)


@needs_shared
@pytest.mark.parametrize(
    ("task", "count", "grader"),
    [
        ("arithmetic/1_digit_addition", 100, "numeric"),
        ("arithmetic/2_digit_addition", 1000, "numeric"),
        ("object_counting", 1000, "numeric"),
        ("qa_wikidata", 20442, "contains"),
        ("general_knowledge", 70, "choice"),
        ("sports_understanding", 1000, "choice"),
        ("date_understanding", 369, "choice"),
        ("elementary_math_qa/question_only", 7688, "choice"),
    ],
)
def test_real_bigbench_tasks_load(task: str, count: int, grader: str) -> None:
    suite = load_suite(f"bigbench:{task}", SHARED)
    assert len(suite.questions) == count
    assert {q.grader for q in suite.questions} == {grader}
    assert all(q.references for q in suite.questions)
    assert len({q.id for q in suite.questions}) == count


@needs_shared
def test_real_bigbench_answers_grade_right() -> None:
    from polyroute.bench import GRADERS

    counting = load_suite("bigbench:object_counting", SHARED).questions[0]
    assert counting.references == ("three", "3")
    assert GRADERS.get(counting.grader)("You have 3 musical instruments.", counting) == 1.0
    assert GRADERS.get(counting.grader)("Three.", counting) == 1.0
    wikidata = load_suite("bigbench:qa_wikidata", SHARED).questions[1]  # "... is" English
    assert GRADERS.get(wikidata.grader)("English.", wikidata) == 1.0


@needs_shared
def test_arithmetic_parent_loads_both_subtasks() -> None:
    tasks = {q.task for q in load_suite("bigbench:arithmetic", SHARED).questions}
    assert tasks == {"arithmetic/1_digit_addition", "arithmetic/2_digit_addition"}


# ----------------------------------------------------------------------------- LLMRouter


@needs_shared
def test_real_llmrouter_test_split() -> None:
    suite = load_suite("llmrouter:test", SHARED)
    tasks = {q.task for q in suite.questions}
    assert "gsm8k" in tasks and "mmlu" in tasks
    assert not tasks & {"mbpp", "human_eval"}  # code needs a sandbox: left out, with a note
    assert any("code_eval" in n for n in suite.notes)
    by_task = {q.task: q for q in suite.questions}
    mmlu = by_task["mmlu"]
    assert mmlu.grader == "choice" and mmlu.references[0] in mmlu.choices
    assert "Answer with the letter" in mmlu.prompt
    assert by_task["gsm8k"].grader == "numeric"
    assert by_task["math"].grader == "math"
    assert by_task["natural_qa"].grader == "f1"


@needs_shared
def test_real_llmrouter_train_split_and_task_filter() -> None:
    # The train file holds U+2028 inside strings and numeric option labels ("1".."4").
    assert len(load_suite("llmrouter:train", SHARED).questions) > 4000
    picked = load_suite("llmrouter:test/gsm8k+mmlu", SHARED)
    assert {q.task for q in picked.questions} == {"gsm8k", "mmlu"}


def test_llmrouter_fixture_file_by_path(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "queries.jsonl",
        [
            {"task_name": "arc", "query": "Sky colour?", "ground_truth": "2", "metric": "em_mc",
             "choices": "{'text': ['red', 'blue'], 'label': ['1', '2']}"},
            {"task_name": "gsm8k", "query": "1+1?", "ground_truth": "so 2\n#### 2",
             "metric": "GSM8K", "choices": None},
            {"task_name": "mbpp", "query": "write f", "ground_truth": "[]", "metric": "code_eval",
             "choices": None},
        ],
    )  # fmt: skip
    suite = load_suite(str(path))
    arc, gsm = suite.questions
    assert arc.references == ("blue",) and arc.choices == ("red", "blue")
    assert gsm.grader == "numeric"
    assert suite.notes == (
        "left out 1 code_eval questions (code questions need a sandbox to grade)",
    )


def test_llmrouter_unknown_task_lists_tasks(tmp_path: Path) -> None:
    folder = tmp_path / "llmrouter/data/example_data/query_data"
    folder.mkdir(parents=True)
    row = {"task_name": "gsm8k", "query": "1+1?", "ground_truth": "2", "metric": "GSM8K"}
    write_jsonl(folder / "default_query_test.jsonl", [row])
    with pytest.raises(BenchError, match="no task nope; tasks: gsm8k"):
        load_suite("llmrouter:test/nope", tmp_path)
    with pytest.raises(BenchError, match="use test or train"):
        load_suite("llmrouter:dev", tmp_path)


# ----------------------------------------------------------------------------- user JSONL


def test_user_jsonl_prompt_messages_lists_and_letters(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"id": "q1", "prompt": "2+2?", "answer": 4, "grader": "numeric"},
            {"id": "q2", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Capital of France?"}],
             "answer": ["Paris", "Paris, France"], "grader": "contains", "task": "geo"},
            {"prompt": "Sky?", "choices": ["red", "blue"], "answer": "B", "grader": "choice"},
        ],
    )  # fmt: skip
    q1, q2, q3 = load_suite(str(path)).questions
    assert (q1.id, q1.references, q1.task) == ("q1", ("4",), "mine")
    assert q2.prompt == "system: Be brief.\nuser: Capital of France?"
    assert q2.task == "geo" and q2.references == ("Paris", "Paris, France")
    assert q3.id == "mine:3" and q3.references == ("blue",)
    assert load_suite(f"jsonl:{path}").questions == [q1, q2, q3]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": 1, "answer": "x"}, "exactly one of 'prompt'"),
        ({"id": 1, "prompt": "p", "answer": "x", "grader": "fuzzy"}, "unknown grader 'fuzzy'"),
        ({"id": 1, "prompt": "p", "anwser": "x"}, "anwser: Extra inputs are not permitted"),
        ({"id": 1, "prompt": "p", "answer": "x", "grader": "choice"}, "needs 'choices'"),
        ({"id": 1, "prompt": "p", "answer": "Z", "grader": "choice", "choices": ["a", "b"]},
         "neither an option's letter nor its text"),
        ({"id": 1, "prompt": "p", "answer": "(", "grader": "regex"}, "not a valid regular"),
    ],
)  # fmt: skip
def test_user_jsonl_errors_name_line_field_and_fix(
    tmp_path: Path, row: dict[str, object], message: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": 0, "prompt": "fine", "answer": "1"}, row])
    with pytest.raises(BenchError, match=message) as info:
        load_suite(str(path))
    assert "bad.jsonl:2" in str(info.value)


def test_user_jsonl_duplicate_ids_are_refused(tmp_path: Path) -> None:
    row = {"id": "same", "prompt": "p", "answer": "1"}
    path = write_jsonl(tmp_path / "dup.jsonl", [row, row])
    with pytest.raises(BenchError, match="id 'same' is used twice"):
        load_suite(str(path))


# ----------------------------------------------------------------------------- resolution


def test_unknown_scheme_explains_the_forms(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"unknown suite 'mmlu'.*scheme:name.*path"):
        load_suite("mmlu", tmp_path)
    with pytest.raises(BenchError, match="does not exist"):
        load_suite(str(tmp_path / "missing.jsonl"))


def test_a_registered_suite_is_found_by_name() -> None:
    def tiny(arg: str, data_dir: Path | None) -> Suite:
        q = Question("tiny:1", ({"role": "user", "content": arg},), ("x",), "exact", "tiny")
        return Suite("tiny", [q])

    SUITES.add("test-tiny", tiny)
    assert load_suite("test-tiny:hello").questions[0].prompt == "hello"
    assert "test-tiny" in list_suites(None)


def test_limit_and_seed_apply_per_suite(tmp_path: Path) -> None:
    rows = [{"id": i, "prompt": f"p{i}", "answer": "1"} for i in range(10)]
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "id": f"b{r['id']}"} for r in rows])
    both = load_suites([str(a), str(b)], limit=3)
    assert [q.id for q in both.questions] == ["0", "1", "2", "b0", "b1", "b2"]
    sampled = load_suites([str(a)], limit=3, seed=1)
    assert sampled.questions == load_suites([str(a)], limit=3, seed=1).questions
    assert [q.id for q in sampled.questions] != ["0", "1", "2"]
    with pytest.raises(BenchError, match="appears twice"):
        load_suites([str(a), str(a)])


def test_data_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYROUTE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
