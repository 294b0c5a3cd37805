"""``POST /v1/chat/completions``: parse → resolve → call upstream (with fallback) → answer → record.

This is the hot path. It reads top to bottom, awaits only the upstream, and hands the
record to the recorder's queue (never to the database).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from polyroute.config import Config
from polyroute.errors import PolyrouteError, UpstreamError
from polyroute.gateway.accounting import price
from polyroute.gateway.errors import error_body
from polyroute.gateway.learning import RecentTrace, RecentTraces
from polyroute.gateway.protocol import (
    ChatCompletionRequest,
    read_json_body,
    validate_chat_request,
)
from polyroute.gateway.routing import RouterHub, route_request
from polyroute.providers.base import JSON, Usage
from polyroute.providers.pool import ProviderPool, Target
from polyroute.routing.base import Decision
from polyroute.store.recorder import AttemptRecord, Recorder, RequestRecord

if TYPE_CHECKING:
    from polyroute.auth.admission import Admission

_SSE_DONE = b"data: [DONE]\n\n"

#: Called with each finished request (metrics, tracing). Must be quick and must not raise:
#: it runs on the request path, right after the record is queued for the store.
Observer = Callable[[RequestRecord], None]
_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ChatService:
    """Serves chat completions over the provider pool and records each request."""

    def __init__(
        self,
        config: Config,
        pool: ProviderPool,
        recorder: Recorder,
        routers: RouterHub | None = None,
        observers: Sequence[Observer] = (),
        recent: RecentTraces | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.recorder = recorder
        self.routers = routers
        self.observers = list(observers)
        #: Each finished request, for feedback that comes before (or soon after) it is stored.
        self.recent = recent if recent is not None else RecentTraces(config.feedback.recent_traces)
        self.store_text = config.store.store_text
        #: Keys' budgets and rate limits (None: auth is off).
        self.admission = admission

    async def __call__(self, request: Request) -> Response:
        start = time.perf_counter()
        body = await read_json_body(request, self.config.server.max_body_bytes)
        chat = validate_chat_request(body)
        trace_id = f"chatcmpl-{uuid.uuid4().hex}"
        # The key's models, rate limits and budget (403 / 429 before anything goes upstream).
        ticket = (
            await self.admission.admit(request, chat, body, trace_id) if self.admission else None
        )
        record = RequestRecord(
            id=trace_id,
            created_at=datetime.now(UTC),
            requested_model=chat.model,
            stream=chat.stream,
        )
        if self.store_text and (ticket is None or ticket.key.store_text):
            record.request_body = body  # redacted and encoded by the recorder, off this path
        try:
            targets, decision, context = await self._targets(chat, body)
        except PolyrouteError as e:
            self._finish(record, start, status=e.status_code, error=e.message)
            raise
        headers = {"x-polyroute-trace-id": record.id}
        if ticket is not None and ticket.headers:
            headers.update(ticket.headers)  # the key's x-ratelimit-* headers
        if decision is not None:
            record.router = decision.router
            record.decision, record.route_context = decision, context
            headers.update(decision_headers(decision))
        # The headers go into the response as it is made: updating them afterwards
        # rebuilds the header list once per header.
        if chat.stream:
            return await self._stream(body, targets, record, start, headers)
        return await self._complete(body, targets, record, start, headers)

    async def _targets(
        self, chat: ChatCompletionRequest, body: JSON
    ) -> tuple[list[Target], Decision | None, Any]:
        """The model to try, then its fallbacks: named directly, or chosen by a router.

        The third value is what an online router wants back with feedback (or None).
        """
        if self.routers is None or not self.routers.handles(chat.model):
            return [self.pool.resolve(chat.model)], None, None
        decision, context = await self.routers.decide_with_context(
            chat.model, route_request(chat, body)
        )
        names = [decision.model, *(m for m in decision.fallbacks if m != decision.model)]
        return [self.pool.resolve(n) for n in names], decision, context

    async def _complete(
        self,
        body: JSON,
        targets: list[Target],
        record: RequestRecord,
        start: float,
        headers: dict[str, str],
    ) -> Response:
        try:
            target, result = await self._first_success(targets, record, body)
        except PolyrouteError as e:
            self._finish(record, start, status=e.status_code, error=e.message)
            raise
        result["model"] = target.model.name
        result["id"] = record.id  # the trace id: what feedback refers to
        if record.request_body is not None:  # text is stored for this request
            record.response_text = message_text(result)
        usage = Usage.from_openai(result.get("usage"))
        self._finish(record, start, usage=usage, target=target, ttft=None)
        return Response(orjson.dumps(result), media_type="application/json", headers=headers)

    async def _first_success(
        self, targets: list[Target], record: RequestRecord, body: JSON
    ) -> tuple[Target, JSON]:
        last: UpstreamError | None = None
        for target in targets:
            record.model, record.provider = target.model.name, target.provider.name
            attempt = _attempt(record, target)
            try:
                result = await target.provider.chat(
                    target.model, {**body, "model": target.model.target}
                )
            except PolyrouteError as e:
                _end_attempt(attempt, e.status_code, e.message)
                if not isinstance(e, UpstreamError) or not e.retryable:
                    raise
                self._failed(target)
                last = e
                continue
            self._succeeded(target)
            return target, result
        assert last is not None
        raise last

    async def _stream(
        self,
        body: JSON,
        targets: list[Target],
        record: RequestRecord,
        start: float,
        headers: dict[str, str],
    ) -> Response:
        client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Always ask the upstream for usage so the record is complete; the usage chunk is
        # dropped again below when the client did not ask for it.
        upstream_body = {
            **body,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        last: UpstreamError | None = None
        for target in targets:
            record.model, record.provider = target.model.name, target.provider.name
            attempt = _attempt(record, target)
            chunks = target.provider.chat_stream(
                target.model, {**upstream_body, "model": target.model.target}
            )
            try:
                # Wait for the first chunk before answering 200, so that an upstream that is
                # down or refuses the request still gets a proper error status.
                first = await anext(chunks)
            except StopAsyncIteration:
                first = None
            except UpstreamError as e:
                await chunks.aclose()
                _end_attempt(attempt, e.status_code, e.message)
                if not e.retryable:
                    self._finish(record, start, status=e.status_code, error=e.message)
                    raise
                self._failed(target)
                last = e
                continue
            except PolyrouteError as e:
                await chunks.aclose()
                _end_attempt(attempt, e.status_code, e.message)
                self._finish(record, start, status=e.status_code, error=e.message)
                raise
            now = time.perf_counter()
            ttft = now - start
            attempt.ttft_ms = (now - attempt.t0) * 1000
            self._succeeded(target)
            return StreamingResponse(
                self._relay(first, chunks, target, record, start, ttft, client_wants_usage),
                media_type="text/event-stream",
                headers={**_STREAM_HEADERS, **headers},
            )
        assert last is not None
        self._finish(record, start, status=last.status_code, error=last.message)
        raise last

    async def _relay(
        self,
        first: JSON | None,
        chunks: AsyncGenerator[JSON, None],
        target: Target,
        record: RequestRecord,
        start: float,
        ttft: float,
        client_wants_usage: bool,
    ) -> AsyncIterator[bytes]:
        name = target.model.name
        usage: Usage | None = None
        status, error = 200, None
        parts: list[str] | None = [] if record.request_body is not None else None
        try:
            chunk = first
            while chunk is not None:
                chunk["model"] = name
                chunk["id"] = record.id
                if parts is not None:
                    _collect_text(chunk, parts)
                if chunk.get("usage"):
                    usage = Usage.from_openai(chunk["usage"])
                    if not client_wants_usage:
                        if not chunk.get("choices"):
                            chunk = await anext(chunks, None)
                            continue
                        chunk.pop("usage")
                elif client_wants_usage and "usage" not in chunk:
                    chunk["usage"] = None  # as OpenAI sends it on every chunk but the last
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                chunk = await anext(chunks, None)
            yield _SSE_DONE
        except PolyrouteError as e:
            # Headers are gone already: report the failure in-band, as OpenAI does.
            status, error = e.status_code, e.message
            yield b"data: " + error_body(e.message, e.error_type, e.code) + b"\n\n"
        except BaseException:
            status, error = 499, "client disconnected"  # nginx's code for it
            raise
        finally:
            await chunks.aclose()
            if parts:
                record.response_text = "".join(parts)
            self._finish(
                record, start, usage=usage, target=target, ttft=ttft, status=status, error=error
            )

    def _failed(self, target: Target) -> None:
        if self.routers is not None:
            self.routers.health.failed(target.model.name)

    def _succeeded(self, target: Target) -> None:
        if self.routers is not None:
            self.routers.health.succeeded(target.model.name)

    def _finish(
        self,
        record: RequestRecord,
        start: float,
        *,
        usage: Usage | None = None,
        target: Target | None = None,
        ttft: float | None = None,
        status: int = 200,
        error: str | None = None,
    ) -> None:
        record.latency_ms = (time.perf_counter() - start) * 1000
        record.ttft_ms = ttft * 1000 if ttft is not None else None
        record.status = status
        record.error = error
        if target is not None:
            record.upstream_model = target.model.target
        if usage is not None:
            record.input_tokens = usage.prompt_tokens
            record.output_tokens = usage.completion_tokens
            record.cached_tokens = usage.cached_tokens
            if target is not None:
                record.cost_usd, record.cost_status = price(target.model, usage)
        if record.attempts and record.attempts[-1].latency_ms is None:
            # The attempt that answered (or was cut short) ends with the request.
            last = record.attempts[-1]
            _end_attempt(last, status, error)
            last.input_tokens, last.output_tokens = record.input_tokens, record.output_tokens
            last.cost_usd, last.cost_status = record.cost_usd, record.cost_status
        self.recent.add(
            record.id, RecentTrace(record.router, record.model, status, record.route_context)
        )
        self.recorder.submit(record)
        for observe in self.observers:
            observe(record)


def decision_headers(decision: Decision) -> dict[str, str]:
    """Why this model: the router and each candidate's predicted quality and cost."""
    scores = {m: round(v, 4) for m, v in decision.scores.items()}
    costs = {m: float(f"{v:.3g}") for m, v in decision.costs.items()}
    return {
        "x-polyroute-router": decision.router,
        "x-polyroute-model": decision.model,
        # json (not orjson): header values must stay ASCII, whatever the model names are.
        "x-polyroute-scores": json.dumps(scores, separators=(",", ":")),
        "x-polyroute-costs": json.dumps(costs, separators=(",", ":")),
    }


def _attempt(record: RequestRecord, target: Target) -> AttemptRecord:
    """Start the record's next upstream attempt on ``target``."""
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


def _end_attempt(attempt: AttemptRecord, status: int, error: str | None = None) -> None:
    attempt.latency_ms = (time.perf_counter() - attempt.t0) * 1000
    attempt.status, attempt.error = status, error


def message_text(result: JSON) -> str | None:
    """The text of a completion's first choice, if it has one."""
    choices = result.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
    return None


def _collect_text(chunk: JSON, parts: list[str]) -> None:
    # The answer's text is the first choice's deltas; other choices (n > 1) are not kept.
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                parts.append(delta["content"])
