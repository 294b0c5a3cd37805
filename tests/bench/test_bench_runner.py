"""The runner: every question to every model, bounded, retried, logged, resumable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tests.bench.bench_fakes import FakePool, adder, addition_questions, no_sleep

from polyroute.bench import AnswerLog, BenchRunner, RunSettings
from polyroute.bench.results import build_rows
from polyroute.config import ModelConfig
from polyroute.errors import RateLimited, UpstreamRejected, UpstreamTimeout

PRICED = {
    "good": ModelConfig(name="good", provider="p", input_price=1.0, output_price=2.0),
    "bad": ModelConfig(name="bad", provider="p"),  # price unknown
}


def runner(pool: FakePool, log_path: Path, **settings: object) -> BenchRunner:
    options: dict[str, object] = {"models": ("good", "bad"), "backoff_s": 0.0, **settings}
    return BenchRunner(
        pool,
        RunSettings(**options),  # type: ignore[arg-type]
        AnswerLog(log_path),
        model_config=PRICED.get,
        sleep=no_sleep,
    )


def log_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_every_question_goes_to_every_model_and_is_graded(tmp_path: Path) -> None:
    pool = FakePool(adder)
    questions = addition_questions(5)
    summary = await runner(pool, tmp_path / "log.jsonl").run(questions)
    assert summary.answered == 10 and not summary.failures
    assert sorted(pool.calls) == sorted((m, q.prompt) for q in questions for m in ("good", "bad"))
    answers = AnswerLog(tmp_path / "log.jsonl").load()
    assert {a.grade for a in answers.values() if a.model == "good"} == {1.0}
    assert {a.grade for a in answers.values() if a.model == "bad"} == {0.0}


async def test_answers_carry_tokens_latency_ttft_and_cost(tmp_path: Path) -> None:
    pool = FakePool(adder, delay_s=0.02)
    await runner(pool, tmp_path / "log.jsonl").run(addition_questions(1))
    answers = AnswerLog(tmp_path / "log.jsonl").load()
    good, bad = answers[("add:0", "good")], answers[("add:0", "bad")]
    assert good.answer == "The answer is 1."
    assert (good.input_tokens, good.output_tokens) == (10, 4)  # the usage chunk came last
    assert good.ttft_s is not None and good.ttft_s >= 0.02  # first content, not the role chunk
    assert good.latency_s >= good.ttft_s
    assert good.cost_usd == pytest.approx((10 * 1.0 + 4 * 2.0) / 1e6)
    assert bad.cost_usd is None  # unknown price: never $0
    body = pool.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 256 and body["temperature"] == 0.0


async def test_non_streaming_mode_has_no_ttft(tmp_path: Path) -> None:
    await runner(FakePool(adder), tmp_path / "log.jsonl", stream=False).run(addition_questions(1))
    good = AnswerLog(tmp_path / "log.jsonl").load()[("add:0", "good")]
    assert good.grade == 1.0 and good.ttft_s is None and good.output_tokens == 4


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    pool = FakePool(adder, delay_s=0.01)
    await runner(pool, tmp_path / "log.jsonl", concurrency=3).run(addition_questions(10))
    assert pool.max_in_flight == 3


async def test_transient_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    failures = {"good": 2}
    delays: list[float] = []

    def flaky(name: str, prompt: str) -> str | BaseException:
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            return RateLimited("slow down") if failures[name] else UpstreamTimeout("timed out")
        return adder(name, prompt)

    async def record(seconds: float) -> None:
        delays.append(seconds)

    r = runner(FakePool(flaky), tmp_path / "log.jsonl", backoff_s=1.0, max_backoff_s=1.5)
    r.sleep = record
    summary = await r.run(addition_questions(1))
    assert summary.answered == 2 and not summary.failures
    good = AnswerLog(tmp_path / "log.jsonl").load()[("add:0", "good")]
    assert good.grade == 1.0 and good.attempts == 3
    assert len(delays) == 2 and 0.5 <= delays[0] <= 1.0 and 0.75 <= delays[1] <= 1.5


async def test_retries_are_bounded_and_the_failure_is_not_logged(tmp_path: Path) -> None:
    pool = FakePool(lambda name, p: UpstreamTimeout("down") if name == "bad" else adder(name, p))
    summary = await runner(pool, tmp_path / "log.jsonl", retries=2).run(addition_questions(1))
    assert [c for c in pool.calls if c[0] == "bad"] == [("bad", "What is 0 plus 1?")] * 3
    assert [(f.model, f.error) for f in summary.failures] == [("bad", "down")]
    assert set(AnswerLog(tmp_path / "log.jsonl").load()) == {("add:0", "good")}  # asked again later


async def test_a_refused_request_counts_as_wrong_and_is_final(tmp_path: Path) -> None:
    def refuse(name: str, prompt: str) -> str | BaseException:
        if name == "bad":
            return UpstreamRejected("prompt is too long for the context", status_code=400)
        return adder(name, prompt)

    pool = FakePool(refuse)
    log_path = tmp_path / "log.jsonl"
    await runner(pool, log_path).run(addition_questions(1))
    bad = AnswerLog(log_path).load()[("add:0", "bad")]
    assert (bad.grade, bad.answer, bad.error) == (0.0, "", "prompt is too long for the context")
    assert len(pool.calls) == 2  # no retry
    await runner(pool, log_path).run(addition_questions(1))
    assert len(pool.calls) == 2  # and not asked again


async def test_an_auth_error_is_not_recorded_as_a_wrong_answer(tmp_path: Path) -> None:
    pool = FakePool(lambda n, p: UpstreamRejected("bad key", status_code=401))
    summary = await runner(pool, tmp_path / "log.jsonl", max_consecutive_failures=3).run(
        addition_questions(5)
    )
    assert summary.answered == 0
    assert set(summary.abandoned) == {"good", "bad"}  # gave up instead of 10 useless calls
    assert len(pool.calls) < 10 and summary.not_asked == 10 - len(pool.calls)
    assert not (tmp_path / "log.jsonl").exists() or not log_lines(tmp_path / "log.jsonl")


async def test_resume_after_interruption_asks_only_what_is_missing(tmp_path: Path) -> None:
    log_path = tmp_path / "log.jsonl"
    questions = addition_questions(6)
    stop_after = 5

    class Crash(BaseException):
        """Stands for the process dying (Ctrl-C, kill): no handler of the runner sees it."""

    class Interrupting(FakePool):
        async def chat_stream(self, name: str, body: dict[str, object]):  # type: ignore[override]
            if len(self.calls) >= stop_after:
                raise Crash
            async for chunk in super().chat_stream(name, body):
                yield chunk

    first = Interrupting(adder)
    with pytest.raises(Crash):
        await runner(first, log_path, concurrency=1).run(questions)
    kept = AnswerLog(log_path).load()
    assert len(kept) == stop_after  # every answer before the interruption was on disk

    second = FakePool(adder)
    summary = await runner(second, log_path, concurrency=2).run(questions)
    assert summary.already_done == stop_after and summary.answered == 12 - stop_after
    asked_twice = {(m, p) for m, p in first.calls} & set(second.calls)
    assert not asked_twice  # no repeat
    answers = AnswerLog(log_path).load()
    assert len(answers) == 12  # no loss
    assert len(build_rows(questions, answers, ["good", "bad"])) == 6
    assert len(log_lines(log_path)) == 12  # nothing written twice


async def test_cancellation_mid_run_keeps_finished_answers(tmp_path: Path) -> None:
    log_path = tmp_path / "log.jsonl"
    pool = FakePool(adder, delay_s=0.05)
    task = asyncio.create_task(runner(pool, log_path, concurrency=2).run(addition_questions(20)))
    await asyncio.sleep(0.18)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    done = len(AnswerLog(log_path).load())
    assert 0 < done < 40
    second = FakePool(adder)
    await runner(second, log_path).run(addition_questions(20))
    assert len(second.calls) == 40 - done


async def test_a_changed_prompt_is_asked_again(tmp_path: Path) -> None:
    log_path = tmp_path / "log.jsonl"
    await runner(FakePool(adder), log_path).run(addition_questions(2))
    changed = [
        q if q.id != "add:1" else type(q)(q.id, ({"role": "user", "content": "What is 5 plus 5?"},),
                                          ("10",), q.grader, q.task)
        for q in addition_questions(2)
    ]  # fmt: skip
    pool = FakePool(adder)
    await runner(pool, log_path).run(changed)
    assert sorted(pool.calls) == [("bad", "What is 5 plus 5?"), ("good", "What is 5 plus 5?")]


async def test_a_torn_last_line_is_asked_again(tmp_path: Path) -> None:
    log_path = tmp_path / "log.jsonl"
    await runner(FakePool(adder), log_path).run(addition_questions(2))
    text = log_path.read_text()
    log_path.write_text(text[: len(text) - 20])  # the process died mid-write
    pool = FakePool(adder)
    await runner(pool, log_path).run(addition_questions(2))
    assert len(pool.calls) == 1
    log = AnswerLog(log_path)
    assert len(log.load()) == 4 and log.torn_lines == 1


async def test_grader_override_and_unknown_grader(tmp_path: Path) -> None:
    r = runner(FakePool(adder), tmp_path / "log.jsonl", grader="exact")
    await r.run(addition_questions(1))
    assert AnswerLog(tmp_path / "log.jsonl").load()[("add:0", "good")].grade == 0.0
    from polyroute.bench import BenchError

    with pytest.raises(BenchError, match="unknown graders 'nope'"):
        await runner(FakePool(adder), tmp_path / "l2.jsonl", grader="nope").run(
            addition_questions(1)
        )


async def test_regrade_applies_a_new_grader_without_asking_again(tmp_path: Path) -> None:
    log_path = tmp_path / "log.jsonl"
    await runner(FakePool(adder), log_path).run(addition_questions(2))
    pool = FakePool(adder)
    strict = runner(pool, log_path, grader="exact")  # "The answer is 1." is not exactly "1"
    assert await strict.regrade(addition_questions(2)) == 2  # good's two answers changed
    assert pool.calls == []
    grades = {k: a.grade for k, a in AnswerLog(log_path).load().items()}
    assert grades == {k: 0.0 for k in grades}
    assert await strict.regrade(addition_questions(2)) == 0
