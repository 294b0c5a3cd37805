"""The answer log, the results file (a routing dataset), the leaderboard's figures, the judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.bench_fakes import FakePool, addition_questions

from polyroute.bench import Answer, AnswerLog, CostMeasure, build_rows, read_results
from polyroute.bench import leaderboard as lb
from polyroute.bench.judge import LLMJudge, parse_verdict
from polyroute.bench.results import log_path_for, prompt_fingerprint, write_results


def answer(qid: str, model: str, grade: float, **kw: object) -> Answer:
    q = next(q for q in addition_questions(3) if q.id == qid)
    fields: dict[str, object] = {
        "answer": "x", "input_tokens": 10, "output_tokens": 4, "latency_s": 0.5,
        "ttft_s": 0.1, "cost_usd": 0.0, "prompt_sha": prompt_fingerprint(q), "task": q.task,
    }  # fmt: skip
    fields.update(kw)
    return Answer(qid=qid, model=model, grade=grade, **fields)  # type: ignore[arg-type]


def test_rows_are_a_routing_dataset() -> None:
    questions = addition_questions(2)
    answers = {
        ("add:0", "a"): answer("add:0", "a", 1.0, cost_usd=0.002),
        ("add:0", "b"): answer("add:0", "b", 0.0, cost_usd=None, error="too long"),
        ("add:1", "a"): answer("add:1", "a", 1.0),
    }
    rows = build_rows(questions, answers, ["a", "b"])
    assert len(rows) == 1  # add:1 lacks model b: not a complete row yet
    (row,) = rows
    assert (
        row["id"] == "add:0" and row["prompt"] == "What is 0 plus 1?" and row["task"] == "addition"
    )
    assert row["scores"] == {"a": 1.0, "b": 0.0}
    assert row["costs"] == {"a": 0.002}  # b's price is unknown: omitted, not $0
    assert row["details"]["b"]["error"] == "too long"
    assert set(row["details"]["a"]) == {
        "answer", "input_tokens", "output_tokens", "latency_s", "ttft_s", "cost_usd"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("measure", "expected"),
    [
        (CostMeasure.USD, {"a": 0.0}),
        (CostMeasure.LATENCY, {"a": 0.5}),
        (CostMeasure.TOKENS, {"a": 4.0}),
    ],
)
def test_cost_measure_picks_one_unit_for_every_model(
    measure: CostMeasure, expected: dict[str, float]
) -> None:
    answers = {("add:0", "a"): answer("add:0", "a", 1.0)}
    (row,) = build_rows(addition_questions(1), answers, ["a"], cost_measure=measure)
    assert row["costs"] == expected


def test_log_appends_flush_at_once_and_repair_a_torn_end(tmp_path: Path) -> None:
    path = tmp_path / "run.answers.jsonl"
    log = AnswerLog(path)
    log.append(answer("add:0", "a", 1.0))
    assert len(path.read_text().splitlines()) == 1  # on disk before close
    log.close()
    with path.open("a") as f:
        f.write('{"qid": "add:1", "mod')  # died mid-line
    with AnswerLog(path) as log:
        log.append(answer("add:2", "a", 0.0))
    loaded = AnswerLog(path)
    assert set(loaded.load()) == {("add:0", "a"), ("add:2", "a")}
    assert loaded.torn_lines == 1


def test_results_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write_results(path, [{"id": "1", "scores": {"a": 1.0}}])
    write_results(path, [{"id": "2", "scores": {"a": 0.0}}])
    assert read_results(path) == [{"id": "2", "scores": {"a": 0.0}}]
    assert list(tmp_path.iterdir()) == [path]
    assert log_path_for(path) == tmp_path / "r.answers.jsonl"


def test_read_results_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "1", "scores": {"a": 1}}\n{"id": "2"}\n')
    from polyroute.bench import BenchError

    with pytest.raises(BenchError, match=r"r.jsonl:2: a results row needs 'scores'"):
        read_results(path)


def test_leaderboard_figures() -> None:
    def row(task: str, a: float, b: float, cost_a: float | None) -> dict[str, object]:
        return {
            "id": task,
            "task": task,
            "scores": {"a": a, "b": b},
            "details": {
                "a": {"latency_s": 1.0, "ttft_s": 0.2, "output_tokens": 10, "cost_usd": cost_a},
                "b": {"latency_s": 3.0, "ttft_s": 0.4, "output_tokens": 30, "cost_usd": 0.0},
            },
        }

    board = lb.compute([row("x", 1, 0, 0.01), row("x", 0, 1, 0.03), row("y", 1, 1, None)])
    a, b = board.models
    assert (a.model, a.quality, b.quality) == ("a", pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert (
        a.priced == 2
        and a.cost_usd == pytest.approx(0.04)
        and a.usd_per_prompt == pytest.approx(0.02)
    )
    assert b.mean_latency_s == 3.0 and b.mean_ttft_s == pytest.approx(0.4)
    assert board.oracle == 1.0  # some model got every prompt right
    assert board.tasks["x"] == {"a": (0.5, 2), "b": (0.5, 2)}


def test_pareto_front_keeps_only_undominated_models() -> None:
    points = [(1.0, 0.5, "cheap"), (2.0, 0.4, "dominated"), (3.0, 0.9, "best")]
    assert [p[2] for p in lb._pareto(points)] == ["cheap", "best"]


def test_plot_uses_latency_when_nothing_costs_money(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "scores": {"a": 1.0}, "details": {"a": {"latency_s": 2.0, "cost_usd": 0.0}}}
    ]
    axis = lb.plot(lb.compute(rows), tmp_path / "p.png")
    assert "latency" in axis and (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("verdict", "grade"),
    [("CORRECT", 1.0), ("Correct.", 1.0), ("INCORRECT", 0.0), ("not correct", 0.0), ("maybe", 0.0)],
)
def test_judge_verdicts(verdict: str, grade: float) -> None:
    assert parse_verdict(verdict) == grade


async def test_judge_asks_the_judge_model_with_question_reference_and_answer() -> None:
    pool = FakePool(lambda name, prompt: "CORRECT" if "twelve" in prompt else "INCORRECT")
    judge = LLMJudge(pool, "judge-model")
    q = addition_questions(1)[0]
    assert await judge("It is twelve... no, 1", q) == 1.0
    assert await judge("2", q) == 0.0
    name, prompt = pool.calls[0]
    assert (
        name == "judge-model" and "What is 0 plus 1?" in prompt and "Reference answer:\n1" in prompt
    )


def test_answer_round_trips_through_json() -> None:
    a = answer("add:0", "a", 1.0)
    assert Answer.from_dict(json.loads(a.to_json())) == a


def test_public_surface_is_pinned() -> None:
    import polyroute.bench

    names = polyroute.bench.__all__
    # Sorted the way ruff (RUF022) sorts: CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert polyroute.bench.__all__ == [
        "GRADERS", "SUITES", "Answer", "AnswerLog", "BenchError", "BenchRunner", "CostMeasure",
        "Grader", "Question", "RunSettings", "RunSummary", "Suite", "SuiteLoader",
        "answer_cost_usd", "build_rows", "default_data_dir", "load_suite", "load_suites",
        "read_results",
    ]  # fmt: skip


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_bench.jsonl"


@pytest.mark.skipif(not FIXTURE.is_file(), reason="tests/fixtures/local_bench.jsonl not made yet")
def test_local_bench_fixture_shows_the_two_local_models_differ() -> None:
    """The local proof, kept as data: smollm2-135m and qwen2.5-coder-0.5b on BIG-bench."""
    board = lb.compute(read_results(FIXTURE))
    assert board.prompts == 200
    addition = board.tasks["arithmetic/1_digit_addition"]
    assert addition["qwen2.5-coder-0.5b"][0] > addition["smollm2-135m"][0] + 0.3
    best = max(m.quality for m in board.models)
    assert board.oracle > best  # neither model is best everywhere: routing has signal
