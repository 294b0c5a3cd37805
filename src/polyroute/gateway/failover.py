"""Failover: which models a request tries, how often, in what order, and rescuing a stream.

A request's *chain* is the model it named (or the router's choice and fallbacks), then each
model's own ``fallbacks``, without repeats. Each model in it gets ``1 + retries`` tries on
a failure worth retrying, with exponential backoff and jitter that honours the upstream's
``Retry-After`` up to a cap; a failure that another model may not share moves on down the
chain; a prompt too long for a model moves to its ``context_window_fallbacks``; a request
the upstream rejects as invalid goes back to the client as it is. A model whose circuit
breaker is open is skipped; when every model is, the client gets 503 with ``Retry-After``.

A stream that breaks after its first chunk (cut, stalled, malformed) is *rescued*: the
text already sent becomes an assistant message, with an instruction to continue, sent to
the next model of the chain (or the same one), and its chunks go on in the client's one
stream; the broken attempt is marked ``rescued`` in the trace. Where that cannot be done
(tool calls half sent, several choices), the stream ends with a ``finish_reason`` of
``error`` and an in-band error: never a silent ``stop``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.types import Receive

from polyroute.errors import (
    CircuitOpen,
    ClientDisconnected,
    ContextWindowExceeded,
    ModelUnavailable,
    PolyrouteError,
    UpstreamError,
    UpstreamIncomplete,
)
from polyroute.gateway.breaker import CircuitBreaker
from polyroute.providers.base import JSON, Usage
from polyroute.providers.pool import ProviderPool, Target
from polyroute.store.recorder import AttemptRecord, RequestRecord

T = TypeVar("T")

#: Backoff before retry k (0-based) is ``BACKOFF_BASE_S · 2^k``, jittered to 50-100% ...
BACKOFF_BASE_S = 0.2
#: ... and never longer than this; a ``Retry-After`` longer than it moves on down the chain.
BACKOFF_CAP_S = 10.0
#: Continuations of one broken stream, at most.
MAX_RESCUES = 2
CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly from where it stopped, "
    "without repeating anything and without any preamble."
)

#: Called when a model fails a request (learning routers count it as a score of 0).
FailureHook = Callable[[RequestRecord, Target], None]


def backoff_delay(retry: int, retry_after_s: float | None) -> float | None:
    """Seconds to wait before retry number ``retry``; None: do not retry this model."""
    delay: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**retry) * random.uniform(0.5, 1.0)
    if retry_after_s is not None:
        if retry_after_s > BACKOFF_CAP_S:
            return None
        delay = max(delay, retry_after_s)
    return delay


def start_attempt(record: RequestRecord, target: Target) -> AttemptRecord:
    """Start the record's next upstream attempt on ``target``."""
    record.model, record.provider = target.model.name, target.provider.name
    attempt = AttemptRecord(
        n=len(record.attempts),
        started_at=datetime.now(UTC),
        model=target.model.name,
        provider=target.provider.name,
        upstream_model=target.model.target,
        t0=time.perf_counter(),
    )
    record.attempts.append(attempt)
    return attempt


def end_attempt(attempt: AttemptRecord, status: int, error: str | None = None) -> None:
    attempt.latency_ms = (time.perf_counter() - attempt.t0) * 1000
    attempt.status, attempt.error = status, error


@dataclass(slots=True)
class OpenStream:
    """A stream whose first chunk has arrived: the answer can start."""

    target: Target
    first: JSON
    chunks: AsyncGenerator[JSON, None]
    attempt: AttemptRecord


class Failover:
    """Runs a request's attempts over its chain of models."""

    def __init__(
        self, pool: ProviderPool, breaker: CircuitBreaker, on_failure: FailureHook | None = None
    ) -> None:
        self.pool = pool
        self.breaker = breaker
        self.on_failure = on_failure

    def chain(self, targets: list[Target]) -> list[Target]:
        """``targets``, then each one's configured fallbacks (transitively), no repeats."""
        out: list[Target] = []
        seen: set[str] = set()
        pending = list(targets)
        while pending:
            target = pending.pop(0)
            if target.model.name in seen:
                continue
            seen.add(target.model.name)
            out.append(target)
            pending.extend(self.pool.resolve(n) for n in target.model.fallbacks)
        return out

    async def run(
        self,
        targets: list[Target],
        record: RequestRecord,
        call: Callable[[Target, AttemptRecord], Awaitable[T]],
    ) -> tuple[Target, T]:
        """The first target (with its retries) whose ``call`` succeeds, and what it returned."""
        chain = self.chain(targets)
        last: PolyrouteError | None = None
        skipped: list[Target] = []
        i = 0
        while i < len(chain):
            target = chain[i]
            i += 1
            name = target.model.name
            if not self.breaker.allow(name):
                skipped.append(target)
                continue
            for retry in range(target.model.retries + 1):
                attempt = start_attempt(record, target)
                try:
                    result = await call(target, attempt)
                except ContextWindowExceeded as e:
                    end_attempt(attempt, e.status_code, e.message)
                    self.breaker.released(name)
                    bigger = [self.pool.resolve(n) for n in target.model.context_window_fallbacks]
                    known = {t.model.name for t in chain}
                    fresh = [t for t in bigger if t.model.name not in known]
                    if not fresh:
                        raise
                    chain[i:i] = fresh  # tried next, before the other fallbacks
                    last = e
                    break
                except UpstreamError as e:
                    end_attempt(attempt, e.status_code, e.message)
                    if not e.falls_back:
                        self.breaker.released(name)
                        raise
                    last = e
                    delay = backoff_delay(retry, e.retry_after_s) if e.retryable else None
                    if retry < target.model.retries and delay is not None:
                        await asyncio.sleep(delay)
                        continue
                    self._failed(record, target)
                    break
                except ModelUnavailable as e:
                    # A local model that is busy (its queue full) or not loaded: another
                    # model may answer now; this one is not broken, so no breaker count.
                    end_attempt(attempt, e.status_code, e.message)
                    self.breaker.released(name)
                    last = e
                    break
                except PolyrouteError as e:
                    end_attempt(attempt, e.status_code, e.message)
                    self.breaker.released(name)
                    raise
                except BaseException:
                    self.breaker.released(name)
                    raise
                self.breaker.succeeded(name)
                return target, result
        if last is not None:
            raise last
        wait = min(self.breaker.retry_after(t.model.name) for t in skipped)
        names = ", ".join(t.model.name for t in skipped)
        raise CircuitOpen(
            f"every model for this request is failing and paused ({names}); retry in {wait:.0f}s",
            retry_after_s=wait,
        )

    def _failed(self, record: RequestRecord, target: Target) -> None:
        self.breaker.failed(target.model.name)
        if self.on_failure is not None:
            self.on_failure(record, target)

    async def complete(
        self, body: JSON, targets: list[Target], record: RequestRecord
    ) -> tuple[Target, JSON]:
        """A non-streaming answer from the first model of the chain that gives one."""

        async def call(target: Target, _attempt: AttemptRecord) -> JSON:
            return await target.provider.chat(target.model, {**body, "model": target.model.target})

        return await self.run(targets, record, call)

    async def open_stream(
        self, body: JSON, targets: list[Target], record: RequestRecord
    ) -> OpenStream:
        """A stream from the first model of the chain that sends a first chunk."""

        async def call(target: Target, attempt: AttemptRecord) -> OpenStream:
            return await _open(target, body, attempt)

        _, opened = await self.run(targets, record, call)
        return opened


async def _open(target: Target, body: JSON, attempt: AttemptRecord) -> OpenStream:
    chunks = target.provider.chat_stream(target.model, {**body, "model": target.model.target})
    try:
        # The first chunk before the 200: an upstream that is down or refuses the request
        # still gets a proper error status, and a fallback.
        first = await anext(chunks)
        while not first.get("choices"):  # nothing for the client yet (e.g. a keep-alive)
            first = await anext(chunks)
    except StopAsyncIteration:
        await chunks.aclose()
        raise UpstreamIncomplete(
            f"{target.model.name} ended the stream before its first chunk"
        ) from None
    except BaseException:
        await chunks.aclose()
        raise
    attempt.ttft_ms = (time.perf_counter() - attempt.t0) * 1000
    return OpenStream(target, first, chunks, attempt)


class StreamRelay:
    """The chunks of one client stream, across the upstream streams that make it up.

    Chunks come out with the trace's id and the answering model's name; usage is taken
    out of them and summed over every upstream stream (the client gets it once, at the
    end, when it asked). ``target`` is the model answering now.
    """

    def __init__(
        self,
        failover: Failover,
        opened: OpenStream,
        chain: list[Target],
        body: JSON,
        record: RequestRecord,
    ) -> None:
        self.failover = failover
        self.stream = opened
        self.target = opened.target
        self.chain = chain
        self.body = body
        self.record = record
        self.usage: Usage | None = None
        #: The first choice's text so far (what a continuation starts from).
        self.text: list[str] = []
        self.rescues = 0
        self._tools_sent = False
        self._sent = False
        self._created: Any = opened.first.get("created")

    async def chunks(self) -> AsyncIterator[JSON]:
        """Every chunk for the client; raises the error that ended a stream it could not
        rescue, after a last chunk whose ``finish_reason`` is ``error``."""
        chunk: JSON | None = self.stream.first
        continuing = False
        while True:
            try:
                while chunk is not None:
                    out = self._prepare(chunk, continuing)
                    if out is not None:
                        self._sent = True
                        yield out
                    chunk = await anext(self.stream.chunks, None)
                return
            except UpstreamError as e:
                await self.stream.chunks.aclose()
                end_attempt(self.stream.attempt, e.status_code, e.message)
                self.failover._failed(self.record, self.target)
                if not self._rescuable(e):
                    yield self._error_chunk()
                    raise
                try:
                    await self._rescue(e)
                except UpstreamError as again:
                    yield self._error_chunk()
                    raise again from e
                chunk, continuing = self.stream.first, self._sent

    async def aclose(self) -> None:
        await self.stream.chunks.aclose()

    def _prepare(self, chunk: JSON, continuing: bool) -> JSON | None:
        chunk["model"] = self.target.model.name
        chunk["id"] = self.record.id
        if self._created is not None:
            chunk["created"] = self._created
        usage = chunk.pop("usage", None)
        if usage:
            self._add_usage(Usage.from_openai(usage))
        choices = chunk.get("choices")
        if not choices:
            return None  # a usage-only chunk: the client gets the sum at the end
        for choice in choices:
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            if continuing:
                delta.pop("role", None)  # the client's stream has its role already
            if delta.get("tool_calls") or delta.get("function_call"):
                self._tools_sent = True
            if choice.get("index", 0) == 0 and isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
        return chunk

    def _add_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        if self.usage is None:
            self.usage = usage
        else:
            self.usage = Usage(
                self.usage.prompt_tokens + usage.prompt_tokens,
                self.usage.completion_tokens + usage.completion_tokens,
                self.usage.cached_tokens + usage.cached_tokens,
            )

    def _rescuable(self, e: UpstreamError) -> bool:
        several = (self.body.get("n") or 1) > 1
        return e.falls_back and not self._tools_sent and not several and self.rescues < MAX_RESCUES

    def _continuation(self, target: Target) -> JSON:
        sent = "".join(self.text)
        body = dict(self.body)
        if sent:
            body["messages"] = [
                *self.body["messages"],
                {"role": "assistant", "content": sent},
                {"role": "user", "content": CONTINUE_INSTRUCTION},
            ]
            # What was sent counts against the client's budget (~4 characters a token).
            for key in ("max_tokens", "max_completion_tokens"):
                if isinstance(body.get(key), int):
                    body[key] = max(1, body[key] - len(sent) // 4)
        return body

    async def _rescue(self, cause: UpstreamError) -> None:
        """Open the continuation: the next models of the chain, then the one that broke."""
        self.rescues += 1
        broken = self.stream.attempt
        here = next(
            (i for i, t in enumerate(self.chain) if t.model.name == self.target.model.name), -1
        )
        candidates = [*self.chain[here + 1 :], self.target]
        last: UpstreamError = cause
        for target in candidates:
            if not self.failover.breaker.allow(target.model.name):
                continue
            attempt = start_attempt(self.record, target)
            try:
                opened = await _open(target, self._continuation(target), attempt)
            except UpstreamError as e:
                end_attempt(attempt, e.status_code, e.message)
                self.failover._failed(self.record, target)
                last = e
                continue
            except ModelUnavailable as e:
                end_attempt(attempt, e.status_code, e.message)
                self.failover.breaker.released(target.model.name)
                continue
            except BaseException:
                self.failover.breaker.released(target.model.name)
                raise
            self.failover.breaker.succeeded(target.model.name)
            broken.rescued = True
            broken.error = (
                f"{broken.error}; stream rescued after {len(''.join(self.text))} characters: "
                f"continued by attempt {attempt.n} on {target.model.name}"
            )
            self.stream, self.target = opened, target
            return
        raise last

    def _error_chunk(self) -> JSON:
        return {
            "id": self.record.id,
            "object": "chat.completion.chunk",
            "created": self._created if self._created is not None else int(time.time()),
            "model": self.target.model.name,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
        }


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientDisconnected` as soon as the client goes away.

    Leaving cancels ``work``, and with it the upstream call (its connection is closed, so a
    remote model stops generating; a local one sees its flag before the next token). Only
    call it once the request body has been read: what comes next on ``receive`` then is
    the disconnect.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:
            raise ClientDisconnected("the client disconnected before its answer") from None
        raise
    finally:
        watcher.cancel()
