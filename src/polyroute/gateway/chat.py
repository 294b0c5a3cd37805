"""``POST /v1/chat/completions``: parse → resolve → call upstream (with fallback) → answer → record.

This is the hot path. It reads top to bottom, awaits only the upstream, and hands the
record to the recorder's journal (never to the database).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from polyroute.config import Config
from polyroute.errors import CircuitOpen, NoEligibleModel, PolyrouteError
from polyroute.gateway.accounting import price
from polyroute.gateway.breaker import CircuitBreaker
from polyroute.gateway.errors import error_body
from polyroute.gateway.failover import (
    Failover,
    StreamRelay,
    end_attempt,
    unless_disconnected,
)
from polyroute.gateway.learning import OnlineLearning, RecentTrace, RecentTraces, is_contextual
from polyroute.gateway.protocol import (
    ChatCompletionRequest,
    read_json_body,
    validate_chat_request,
)
from polyroute.gateway.routing import AUTO, RouterHub, route_request
from polyroute.providers.base import JSON, Usage
from polyroute.providers.pool import ProviderPool, Target
from polyroute.routing.base import Decision
from polyroute.store.recorder import Recorder, RequestRecord
from polyroute.telemetry.propagation import Begin, begin_request

if TYPE_CHECKING:
    from polyroute.gateway.admission import Admission

_SSE_DONE = b"data: [DONE]\n\n"

#: Called with each finished request (metrics, tracing). Must be quick and must not raise:
#: it runs on the request path, right after the record is queued for the store.
Observer = Callable[[RequestRecord], None]
#: The error recorded with status 499.
CLIENT_LEFT = "client disconnected"
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
        learning: OnlineLearning | None = None,
        admission: Admission | None = None,
        trace: Begin | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.recorder = recorder
        self.routers = routers
        self.observers = list(observers)
        #: Each finished request, for feedback that comes before (or soon after) it is stored.
        self.recent = recent if recent is not None else RecentTraces(config.feedback.recent_traces)
        self.store_text = config.store.store_text
        self.learning = learning
        #: Per-model circuit breakers, shared with the routers' eligibility when there are routers.
        self.breaker = routers.health if routers is not None else CircuitBreaker.from_config(config)
        self.failover = Failover(pool, self.breaker, self._report_failure)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Keys' budgets and rate limits (None: auth is off).
        self.admission = admission
        #: Continues an incoming W3C trace (tracing on); None passes traceparent through.
        self.trace = trace

    async def __call__(self, request: Request) -> Response:
        start = time.perf_counter()
        record = RequestRecord(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created_at=datetime.now(UTC),
            requested_model="",
            stream=False,
        )
        begin_request(self.trace, request.scope["headers"], record)
        # Every request that reaches the route is recorded, whatever ends it: a rejected
        # body (400, 413), a model not found, an upstream error, a bug (500), a client gone.
        try:
            return await self._serve(request, record, start)
        except PolyrouteError as e:
            if not record.finished:
                self._finish(record, start, status=e.status_code, error=e.message)
            raise
        except asyncio.CancelledError:
            if not record.finished:  # cancelled with the connection: the client left
                self._finish(record, start, status=499, error=CLIENT_LEFT)
            raise
        except Exception as e:
            if not record.finished:
                self._finish(record, start, status=500, error=unexpected_error(e))
            raise

    async def _serve(self, request: Request, record: RequestRecord, start: float) -> Response:
        server = self.config.server
        body = await read_json_body(request, server.max_body_bytes, timeout_s=server.body_timeout_s)
        model = body.get("model")
        record.requested_model = model if isinstance(model, str) else ""
        record.stream = body.get("stream") is True
        if self.store_text and self.admission is None:
            record.request_body = body  # redacted and encoded as the record is journaled
        chat = validate_chat_request(body)
        # The key's models, rate limits and budget (403 / 429 before anything goes upstream).
        ticket = (
            await self.admission.admit(request, chat, body, record.id) if self.admission else None
        )
        if ticket is not None and self.store_text and ticket.key.store_text:
            record.request_body = body  # this key lets its prompts and answers be stored
        targets, decision, context = await self._targets(chat, body)
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
        return await self._complete(request, body, targets, record, start, headers)

    async def _targets(
        self, chat: ChatCompletionRequest, body: JSON
    ) -> tuple[list[Target], Decision | None, Any]:
        """The model to try, then its fallbacks: named directly, or chosen by a router.

        The third value is what an online router wants back with feedback (or None).
        Each model's own ``fallbacks`` are added by the failover (:mod:`.failover`).
        """
        if self.routers is None or not self.routers.handles(chat.model):
            return [self.pool.resolve(chat.model)], None, None
        try:
            decision, context = await self.routers.decide_with_context(
                chat.model, route_request(chat, body)
            )
        except NoEligibleModel:
            self._raise_if_all_open(chat.model)
            raise
        names = [decision.model, *(m for m in decision.fallbacks if m != decision.model)]
        return [self.pool.resolve(n) for n in names], decision, context

    async def _complete(
        self,
        request: Request,
        body: JSON,
        targets: list[Target],
        record: RequestRecord,
        start: float,
        headers: dict[str, str],
    ) -> Response:
        try:
            work = self.failover.complete(body, targets, record)
            target, result = await unless_disconnected(request.receive, work)
        except PolyrouteError as e:
            self._finish(record, start, status=e.status_code, error=e.message)
            raise
        result["model"] = target.model.name
        result["id"] = record.id  # the trace id: what feedback refers to
        if record.request_body is not None:  # text is stored for this request
            record.response_text = message_text(result)
        usage = Usage.from_openai(result.get("usage"))
        answer = orjson.dumps(result)  # before the record: encoding can fail, and that is a 500
        self._finish(record, start, usage=usage, target=target, ttft=None)
        return Response(answer, media_type="application/json", headers=headers)

    async def _stream(
        self,
        body: JSON,
        targets: list[Target],
        record: RequestRecord,
        start: float,
        headers: dict[str, str],
    ) -> Response:
        client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Always ask the upstream for usage so the record is complete; the client gets it
        # (summed over a rescued stream's parts) only when it asked.
        upstream_body = {
            **body,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        try:
            opened = await self.failover.open_stream(upstream_body, targets, record)
        except PolyrouteError as e:
            self._finish(record, start, status=e.status_code, error=e.message)
            raise
        ttft = time.perf_counter() - start
        relay = StreamRelay(
            self.failover, opened, self.failover.chain(targets), upstream_body, record
        )
        return StreamingResponse(
            self._relay(relay, record, start, ttft, client_wants_usage),
            media_type="text/event-stream",
            headers={**_STREAM_HEADERS, **headers},
        )

    async def _relay(
        self,
        relay: StreamRelay,
        record: RequestRecord,
        start: float,
        ttft: float,
        client_wants_usage: bool,
    ) -> AsyncIterator[bytes]:
        status, error = 200, None
        parts: list[str] | None = [] if record.request_body is not None else None
        try:
            async for chunk in relay.chunks():
                if parts is not None:
                    _collect_text(chunk, parts)
                if client_wants_usage:
                    chunk["usage"] = None  # as OpenAI sends it on every chunk but the last
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            if client_wants_usage and relay.usage is not None:
                yield b"data: " + orjson.dumps(_usage_chunk(record, relay)) + b"\n\n"
            yield _SSE_DONE
        except PolyrouteError as e:
            # Headers are gone already: report the failure in-band, as OpenAI does.
            status, error = e.status_code, e.message
            yield b"data: " + error_body(e.message, e.error_type, e.code) + b"\n\n"
        except (GeneratorExit, asyncio.CancelledError):
            status, error = 499, CLIENT_LEFT  # the client went away: nginx's code for it
            raise
        except Exception as e:
            status, error = 500, unexpected_error(e)  # a bug, not the client: say which
            raise
        finally:
            await relay.aclose()
            if parts:
                record.response_text = "".join(parts)
            self._finish(
                record,
                start,
                usage=relay.usage,
                target=relay.target,
                ttft=ttft,
                status=status,
                error=error,
            )

    def _raise_if_all_open(self, model: str) -> None:
        """Every model the router could choose is paused by its breaker: that is the
        upstreams failing (503, come back later), not a request no model can serve (400)."""
        assert self.routers is not None
        name = self.routers.default if model == AUTO else model
        assert name is not None  # handles() said a router takes this model
        router = self.routers.routers[name]
        names = [c.name for c in self.routers.candidates(router)]
        if names and not any(self.breaker.healthy(n) for n in names):
            wait = min(self.breaker.retry_after(n) for n in names)
            raise CircuitOpen(
                f"every model router {router.name!r} can choose is failing and paused "
                f"({', '.join(names)}); retry in {wait:.0f}s",
                retry_after_s=wait,
            )

    def _report_failure(self, record: RequestRecord, target: Target) -> None:
        """A model failed this request: an online router that chose it learns a score of 0."""
        if self.learning is None or record.router not in self.learning.routers:
            return
        router = self.learning.routers[record.router]
        if record.route_context is None and is_contextual(router):
            return  # nothing to learn from without the context, and no text to rebuild it
        task = asyncio.get_running_loop().create_task(
            self.learning.teach(record.router, target.model.name, 0.0, record.route_context, None)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        record.finished = True
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
            end_attempt(last, status, error)
            last.input_tokens, last.output_tokens = record.input_tokens, record.output_tokens
            last.cost_usd, last.cost_status = record.cost_usd, record.cost_status
        self.recent.add(
            record.id, RecentTrace(record.router, record.model, status, record.route_context)
        )
        self.recorder.submit(record)
        for observe in self.observers:
            observe(record)


def unexpected_error(error: BaseException) -> str:
    """What a trace says of an error polyroute did not expect (its type and message)."""
    return f"{type(error).__name__}: {error}"[:2000]


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


def message_text(result: JSON) -> str | None:
    """The text of a completion's first choice, if it has one."""
    choices = result.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
    return None


def _usage_chunk(record: RequestRecord, relay: StreamRelay) -> JSON:
    """The last chunk when the client asked for usage: no choices, the whole stream's usage."""
    usage = relay.usage
    assert usage is not None
    counts: JSON = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cached_tokens:
        counts["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return {
        "id": record.id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": relay.target.model.name,
        "choices": [],
        "usage": counts,
    }


def _collect_text(chunk: JSON, parts: list[str]) -> None:
    # The answer's text is the first choice's deltas; other choices (n > 1) are not kept.
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                parts.append(delta["content"])
