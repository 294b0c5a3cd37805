"""The bench runner: ask every question to every model, grade, and log each answer at once.

Requests go through the same :class:`~polyroute.providers.pool.ProviderPool` as the gateway
(or any object with its ``chat`` / ``chat_stream`` methods), streamed so time to first
token is real. At most ``concurrency`` requests are in flight; a retryable upstream error is
tried again with exponential backoff (bounded). An upstream that refuses *this request*
(400, 413, 422: too long for its context, say) records the answer as wrong, with the error;
other failures (a bad key, retries spent) are not logged, so the next run asks again. Every
final answer is appended to the :class:`~polyroute.bench.results.AnswerLog` before the next
is counted, and whatever the log already holds is not asked again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from polyroute.bench.costs import answer_cost_usd
from polyroute.bench.questions import BenchError, Grader, Question
from polyroute.bench.registry import GRADERS
from polyroute.bench.results import Answer, AnswerLog, prompt_fingerprint
from polyroute.config import ModelConfig
from polyroute.errors import InvalidRequest, PolyrouteError, UpstreamError, UpstreamRejected

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class ChatPool(Protocol):
    """What the runner needs of :class:`~polyroute.providers.pool.ProviderPool`."""

    async def chat(self, name: str, body: JSON) -> JSON: ...

    def chat_stream(self, name: str, body: JSON) -> AsyncIterator[JSON]: ...


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How to ask: which models, how many at once, how hard to retry."""

    models: tuple[str, ...]
    max_tokens: int = 256
    temperature: float = 0.0
    concurrency: int = 4
    #: Tries after the first for a retryable error (so ``retries + 1`` calls at most).
    retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stream: bool = True
    #: After this many questions in a row fail for a model, stop asking it in this run.
    max_consecutive_failures: int = 10
    #: Grade every question with this grader instead of the one it names.
    grader: str | None = None


@dataclass(slots=True)
class Failure:
    qid: str
    model: str
    error: str


@dataclass(slots=True)
class RunSummary:
    """What a run did: new answers, answers found in the log, and failures to retry later."""

    asked: int = 0
    answered: int = 0
    already_done: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: Models given up on in this run, with the last error.
    abandoned: dict[str, str] = field(default_factory=dict)
    #: Pairs not asked because their model was given up on.
    not_asked: int = 0


#: Called once per (question, model) pair finished: its answer, or None when it failed.
ProgressHook = Callable[[Answer | None, str], None]


class BenchRunner:
    """Runs one set of questions against models through a pool, logging as it goes."""

    def __init__(
        self,
        pool: ChatPool,
        settings: RunSettings,
        log_file: AnswerLog,
        *,
        model_config: Callable[[str], ModelConfig | None] = lambda _name: None,
        graders: Mapping[str, Grader] | None = None,
        on_progress: ProgressHook | None = None,
        on_start: Callable[[int], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if settings.concurrency < 1:
            raise BenchError("concurrency must be at least 1")
        if not settings.models:
            raise BenchError("name at least one model to ask")
        self.pool = pool
        self.settings = settings
        self.log = log_file
        self.model_config = model_config
        self.graders = dict(graders or {})
        self.on_progress = on_progress
        self.on_start = on_start
        self.sleep = sleep
        self._failures_in_row: dict[str, int] = {}
        self.summary = RunSummary()

    def pending(self, questions: Sequence[Question]) -> list[tuple[Question, str]]:
        """(question, model) pairs the log does not answer yet, question by question."""
        done = self.log.load()
        todo = []
        for q in questions:
            sha = prompt_fingerprint(q)
            for m in self.settings.models:
                a = done.get((q.id, m))
                if a is not None and a.prompt_sha == sha:
                    self.summary.already_done += 1
                else:
                    todo.append((q, m))
        return todo

    def grader_for(self, question: Question) -> Grader:
        name = self.settings.grader or question.grader
        if name in self.graders:
            return self.graders[name]
        try:
            return GRADERS.get(name)
        except KeyError as e:
            raise BenchError(f"question {question.id}: {e.args[0]}") from None

    async def run(self, questions: Sequence[Question]) -> RunSummary:
        """Ask everything not yet in the log; returns the summary (also on :attr:`summary`)."""
        for q in questions:  # fail before the first request, not after the thousandth
            self.grader_for(q)
        todo = self.pending(questions)
        if self.on_start is not None:
            self.on_start(len(todo))
        queue: asyncio.Queue[tuple[Question, str]] = asyncio.Queue()
        for pair in todo:
            queue.put_nowait(pair)
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(min(self.settings.concurrency, max(1, len(todo))))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.log.close()
        return self.summary

    async def _worker(self, queue: asyncio.Queue[tuple[Question, str]]) -> None:
        while True:
            try:
                question, model = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if model in self.summary.abandoned:
                self.summary.not_asked += 1
                self._progress(None, model)
                continue
            self.summary.asked += 1
            try:
                answer = await self.ask(question, model)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one bad answer must not end a long run
                self._failed(question, model, e)
                continue
            self.log.append(answer)
            self.summary.answered += 1
            self._failures_in_row[model] = 0
            self._progress(answer, model)

    def _failed(self, question: Question, model: str, e: Exception) -> None:
        message = str(e) or e.__class__.__name__
        if not isinstance(e, PolyrouteError):
            log.exception("bench: %s on %s failed unexpectedly", model, question.id)
            message = f"{e.__class__.__name__}: {message}"
        self.summary.failures.append(Failure(question.id, model, message))
        n = self._failures_in_row.get(model, 0) + 1
        self._failures_in_row[model] = n
        if n >= self.settings.max_consecutive_failures and model not in self.summary.abandoned:
            self.summary.abandoned[model] = message
        self._progress(None, model)

    def _progress(self, answer: Answer | None, model: str) -> None:
        if self.on_progress is not None:
            self.on_progress(answer, model)

    async def ask(self, question: Question, model: str) -> Answer:
        """One question to one model: call (with retries), grade, price. Not logged here."""
        body: JSON = {
            "messages": [dict(m) for m in question.messages],
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                reply = await (self._stream(model, body) if s.stream else self._chat(model, body))
            except PolyrouteError as e:
                if is_refusal(e):
                    return await self._answer(question, model, _Reply.refused(str(e)), attempt + 1)
                if not isinstance(e, UpstreamError) or not e.retryable or attempt == s.retries:
                    raise
                delay = min(s.max_backoff_s, s.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
                log.info("bench: %s on %s: %s; retrying in %.1fs", model, question.id, e, delay)
                await self.sleep(delay)
                continue
            return await self._answer(question, model, reply, attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _answer(self, question: Question, model: str, reply: _Reply, attempts: int) -> Answer:
        grade = 0.0 if reply.error is not None else await self.grade(question, reply.text)
        return Answer(
            qid=question.id,
            model=model,
            answer=reply.text,
            grade=grade,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            latency_s=reply.latency_s,
            ttft_s=reply.ttft_s,
            cost_usd=answer_cost_usd(
                self.model_config(model),
                reply.input_tokens,
                reply.output_tokens,
                reply.cached_tokens,
            ),
            prompt_sha=prompt_fingerprint(question),
            task=question.task,
            error=reply.error,
            attempts=attempts,
        )

    async def grade(self, question: Question, text: str) -> float:
        result = self.grader_for(question)(text, question)
        return float(await result) if inspect.isawaitable(result) else float(result)

    async def regrade(self, questions: Sequence[Question]) -> int:
        """Grade the logged answers again with today's graders (nothing is asked).

        Answers whose grade changes are appended to the log again (the latest line wins);
        returns how many changed.
        """
        done = self.log.load()
        changed = 0
        try:
            for q in questions:
                sha = prompt_fingerprint(q)
                for m in self.settings.models:
                    a = done.get((q.id, m))
                    if a is None or a.prompt_sha != sha or a.error is not None:
                        continue
                    grade = await self.grade(q, a.answer)
                    if grade != a.grade:
                        self.log.append(dataclasses.replace(a, grade=grade, ts=time.time()))
                        changed += 1
        finally:
            self.log.close()
        return changed

    async def _stream(self, model: str, body: JSON) -> _Reply:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        start = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        usage: Any = None
        stream = self.pool.chat_stream(model, body)
        try:
            async for chunk in stream:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if ttft is None and (content or delta.get("reasoning_content")):
                        ttft = time.perf_counter() - start
                    if content:
                        parts.append(content)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        return _Reply.of("".join(parts), usage, time.perf_counter() - start, ttft)

    async def _chat(self, model: str, body: JSON) -> _Reply:
        start = time.perf_counter()
        response = await self.pool.chat(model, body)
        choices = response.get("choices") or [{}]
        text = (choices[0].get("message") or {}).get("content") or ""
        return _Reply.of(str(text), response.get("usage"), time.perf_counter() - start, None)


def is_refusal(e: PolyrouteError) -> bool:
    """Whether the model refused this request itself (e.g. too long), so cannot answer it."""
    if isinstance(e, UpstreamRejected):
        return e.status_code in (400, 413, 422)
    return isinstance(e, InvalidRequest)


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float
    ttft_s: float | None
    error: str | None = None
    cached_tokens: int = 0

    @classmethod
    def of(cls, text: str, usage: Any, latency_s: float, ttft_s: float | None) -> _Reply:
        prompt = completion = None
        cached = 0
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                cached = details["cached_tokens"]
        return cls(
            text=text,
            input_tokens=int(prompt) if isinstance(prompt, int | float) else None,
            output_tokens=int(completion) if isinstance(completion, int | float) else None,
            latency_s=latency_s,
            ttft_s=ttft_s,
            cached_tokens=cached,
        )

    @classmethod
    def refused(cls, error: str) -> _Reply:
        return cls(
            text="", input_tokens=None, output_tokens=None, latency_s=0.0, ttft_s=None, error=error
        )
