"""Building the ASGI app: the routes, the error mapping, and what starts and stops with it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from polyroute import __version__
from polyroute.auth.metrics import KeyMetrics
from polyroute.catalog import apply_catalog, load_catalog
from polyroute.config import AuthConfig, Config, ModelConfig, default_config
from polyroute.dashboard import Dashboard
from polyroute.engines import Engines, attach_engines, weights_store
from polyroute.errors import NotFound, PolyrouteError
from polyroute.gateway.admin import admin_router, spend_router
from polyroute.gateway.admission import Admission
from polyroute.gateway.auth import Gate
from polyroute.gateway.chat import ChatService
from polyroute.gateway.embeddings import EmbeddingsService
from polyroute.gateway.errors import (
    error_response,
    handle_http_error,
    handle_polyroute_error,
    handle_unexpected,
)
from polyroute.gateway.feedback import FeedbackService
from polyroute.gateway.health import HealthCache
from polyroute.gateway.learning import OnlineLearning, RecentTraces
from polyroute.gateway.messages import CountTokensService, MessagesService
from polyroute.gateway.protocol import ChatCompletionRequest, openapi_body
from polyroute.gateway.routing import AUTO, build_router_hub
from polyroute.gateway.windows import shared_windows
from polyroute.providers.pool import ProviderPool
from polyroute.store import Recorder, Store
from polyroute.store.keys import KeyStore
from polyroute.store.retention import Purger
from polyroute.telemetry import Telemetry

log = logging.getLogger("polyroute")


def safe_url(url: str) -> str:
    """A database URL fit for a log: any password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class Gateway:
    """The parts one gateway process holds: providers, the store and its recorder."""

    def __init__(
        self, config: Config, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        # Engine entries get their provider first: then every model is an ordinary one.
        config = attach_engines(config)
        # Prices, context windows and capabilities the config leaves out come from the hub.
        config = apply_catalog(config, load_catalog(config.catalog_file))
        self.config = config
        self.pool = ProviderPool(config, transport=transport)
        self.store = Store(config.store.database_url)
        self.recorder = Recorder(
            self.store,
            journal_dir=config.store.journal_dir,
            batch_size=config.store.batch_size,
            flush_interval_s=config.store.flush_interval_s,
        )
        self.routers = build_router_hub(config)
        # The inference servers polyroute runs; routers see one that is not serving as down.
        self.engines = Engines(config, self.pool.providers, weights_store(config.weights))
        if self.routers is not None:
            self.engines.guard(self.routers)
        self.telemetry = Telemetry(config)  # /metrics, and OTLP spans when configured
        # Keys: the gate ahead of every route, and budgets and rate limits on the chat path.
        self.keys = KeyStore(self.store.engine)
        self.gate = Gate(config, self.keys)
        self.admission = (
            Admission(
                config,
                self.keys,
                self.pool,
                self.routers,
                windows=shared_windows(config.auth, self.keys)
                if isinstance(config.auth, AuthConfig)
                else None,
                metrics=KeyMetrics(self.telemetry.metrics.registry)
                if self.telemetry.metrics is not None
                else None,
            )
            if self.gate.enabled
            else None
        )
        # Feedback finds recent traces here, and teaches the online routers through learning.
        self.recent = RecentTraces(config.feedback.recent_traces)
        self.learning = OnlineLearning(
            self.routers.online if self.routers is not None else {},
            self.store,
            save_interval_s=config.feedback.save_interval_s,
        )
        self.chat = ChatService(
            config,
            self.pool,
            self.recorder,
            self.routers,
            observers=[
                *([self.admission.finished] if self.admission is not None else []),
                *self.telemetry.observers,
            ],
            recent=self.recent,
            learning=self.learning,
            admission=self.admission,
            trace=self.telemetry.spans.begin if self.telemetry.spans is not None else None,
        )
        self.messages = MessagesService(self.chat)  # Anthropic's API over the same chat path
        self.count_tokens = CountTokensService(self.chat)
        self.embeddings = EmbeddingsService(config, self.pool, transport)
        self.health = HealthCache(self.pool)  # /health: upstreams asked at most every 5 s
        self.feedback = FeedbackService(
            config,
            self.store,
            self.recent,
            self.learning,
            authorize=self.admission.authorize_feedback if self.admission is not None else None,
        )
        self.purger = Purger(self.store, config.store.retention_days, config.store.purge_interval_s)
        self.started_at = time.time()
        self._publisher: asyncio.Task[None] | None = None
        self.dashboard = Dashboard(self.store, config.dashboard)  # /ui; reads on its own thread

    def describe(self, base_url: str) -> list[str]:
        """What this gateway serves, for the start-up log: models, routers, store, pages."""
        from polyroute.gateway.bindings import describe

        lines = [f"polyroute {__version__} at {base_url}/v1"]
        for m in self.config.models:
            provider = self.config.providers[m.provider]
            where = m.source or m.path or m.weights or m.target
            if m.engine is not None:
                url = provider.base_url
                lines.append(f"  model {m.name}: {m.engine.kind} engine at {url} ({where})")
                continue
            lines.append(f"  model {m.name}: {provider.api} provider {m.provider!r} ({where})")
        if self.routers is None:
            lines.append("  no routers: clients name a model")
        else:
            lines += [f"  router {line}" for line in describe(self.routers.coverage)]
            lines.append(f'  model="auto" uses router {self.routers.default!r}')
            for c in self.routers.coverage.values():
                if (warning := c.warning()) is not None:
                    log.warning(warning)
        lines.append(f"  store: {safe_url(self.config.store.database_url)}")
        if self.config.dashboard.enabled:
            lines.append(f"  dashboard: {base_url}/ui")
        lines.append(f"  routes: {base_url}/docs")
        return lines

    async def start(self) -> None:
        await asyncio.to_thread(self.store.migrate)
        await asyncio.to_thread(self.learning.load)  # what the online routers learned before
        if self.routers is not None:
            await asyncio.to_thread(self.routers.warm)  # embedding weights, before any request
        await self.recorder.start()  # its writer first stores what the journal kept
        self.learning.start()
        self.purger.start()
        metrics = self.telemetry.metrics
        if metrics is not None and metrics.multiprocess:
            # Several workers: a scrape adds up every worker's recorder figures, so each
            # worker writes its own now and then, not only when it is the one scraped.
            self._publisher = asyncio.create_task(self._publish_recorder(), name="polyroute-mp")
        if self.admission is not None:
            self.admission.start()  # charges reservations a killed replica left held
        await self.pool.start()
        await self.engines.start()  # weights fetched, processes started, ready (bounded)

    async def _publish_recorder(self, every_s: float = 1.0) -> None:
        metrics = self.telemetry.metrics
        assert metrics is not None
        while True:
            metrics.set_recorder(await asyncio.to_thread(self.recorder.stats))
            await asyncio.sleep(every_s)

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
        if self.admission is not None:
            # First, while the upstreams still answer: the requests in flight finish (for a
            # while), then every reservation still pending is settled.
            await self.admission.aclose()
        await self.engines.stop()  # SIGTERM, then SIGKILL after each engine's grace period
        await self.pool.aclose()
        await self.embeddings.aclose()
        await self.recorder.aclose()  # flush every queued record before exit
        await self.learning.aclose()  # and save what the online routers learned
        await self.purger.aclose()
        await self.telemetry.aclose()  # and every queued span (and this worker's live gauges)
        self.dashboard.close()
        await asyncio.to_thread(self.store.dispose)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def model_card(m: ModelConfig, created: int) -> dict[str, Any]:
    """An OpenAI model object, plus what the hub knows (prices in USD per million tokens)."""
    card: dict[str, Any] = {
        "id": m.name,
        "object": "model",
        "created": created,
        "owned_by": m.provider,
    }
    if m.context_window is not None:
        card["context_window"] = m.context_window
    if m.capabilities:
        card["capabilities"] = list(m.capabilities)
    if m.input_price is not None and m.output_price is not None:
        card["pricing"] = {"input": m.input_price, "output": m.output_price}
        if m.cached_input_price is not None:
            card["pricing"]["cached_input"] = m.cached_input_price
        if m.cache_write_price is not None:
            card["pricing"]["cache_write"] = m.cache_write_price
    if m.aliases:
        card["aliases"] = list(m.aliases)
    return card


CHAT_PATH = "/v1/chat/completions"
_FEEDBACK_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["trace_id", "score"],
                "properties": {
                    "trace_id": {"type": "string", "maxLength": 64},
                    "score": {
                        "anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}]
                    },
                    "source": {"type": "string"},
                    "comment": {"type": "string"},
                },
            }
        }
    },
}


class GatewayApp(FastAPI):
    """FastAPI, with ``POST /v1/chat/completions`` answered ahead of its middleware stack.

    The chat route is the hot path: FastAPI's stack (server errors, its own telemetry hooks,
    body limit, exception handlers, exit stack, routing) cost it ~0.2 ms of CPU a request,
    a quarter of the total, for nothing it uses (``benchmarks/gateway_overhead.py``).
    The fast path maps errors exactly as the exception handlers do; other paths (and any app
    given middleware of its own, or mounted under a prefix) go through FastAPI as usual.
    """

    chat: ChatService | None = None
    gate: Gate | None = None
    admission: Admission | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.gate is not None and scope["type"] == "http":
            refused = await self.gate.check(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
            send = self.gate.wrap_send(scope, send)
        try:
            await self._serve(scope, receive, send)
        finally:
            if self.admission is not None and scope["type"] == "http":
                self.admission.release(scope)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.chat is not None
            and scope["type"] == "http"
            and scope["path"] == CHAT_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.user_middleware
        ):
            scope["app"] = self
            request = Request(scope, receive, send)
            try:
                response = await self.chat(request)
            except PolyrouteError as e:
                response = error_response(e)
            except Exception as e:
                response = await handle_unexpected(request, e)
            # An error after the answer started (a stream cut short) reaches the server,
            # which closes the connection: as it did through ServerErrorMiddleware.
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    config: Config | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The polyroute ASGI app; ``config`` defaults to the embedded local models.

    ``transport`` replaces the network under every HTTP provider (tests use it).
    """
    gateway = Gateway(config or default_config(), transport=transport)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = GatewayApp(
        title="polyroute",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.chat = gateway.chat
    app.gate = gateway.gate
    app.admission = gateway.admission
    app.include_router(admin_router(gateway.keys))
    if gateway.config.dashboard.enabled:
        app.include_router(spend_router(gateway.keys))
    app.add_exception_handler(PolyrouteError, handle_polyroute_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(Exception, handle_unexpected)

    @app.post(
        "/v1/chat/completions",
        response_model=None,
        openapi_extra={"requestBody": openapi_body(ChatCompletionRequest)},
    )
    async def chat_completions(request: Request) -> Response:
        return await gateway.chat(request)

    # Where GatewayApp's fast path does not apply (e.g. under a prefix), the hot path is still
    # a plain Starlette route put ahead of the FastAPI one (which stays, for /docs): it skips
    # FastAPI's per-request dependency solving (query parsing, an exit stack).
    app.router.routes.insert(0, Route(CHAT_PATH, chat_completions, methods=["POST"]))

    @app.post("/v1/messages", response_model=None)
    async def messages(request: Request) -> Response:
        """Anthropic's Messages API (``anthropic`` SDK, Claude-style tools); ``model: "auto"``
        routes as on /v1/chat/completions. Errors are Anthropic's error JSON."""
        return await gateway.messages(request)

    @app.post("/v1/messages/count_tokens", response_model=None)
    async def count_tokens(request: Request) -> Response:
        """Input tokens of a Messages request: Anthropic's count for a model it serves, else
        an estimate (header ``x-polyroute-token-count`` says which)."""
        return await gateway.count_tokens(request)

    @app.post("/v1/embeddings", response_model=None)
    async def embeddings(request: Request) -> Response:
        """OpenAI's embeddings API, passed to the configured model named (or the built-in
        all-MiniLM-L6-v2)."""
        return await gateway.embeddings(request)

    @app.get("/", response_model=None)
    async def root() -> Response:
        """The dashboard (or, with it off, the routes)."""
        return RedirectResponse("/ui" if gateway.config.dashboard.enabled else "/docs")

    @app.post("/v1/feedback", response_model=None, openapi_extra={"requestBody": _FEEDBACK_BODY})
    async def feedback(request: Request) -> Response:
        return await gateway.feedback(request)

    @app.get("/v1/models")
    async def list_models() -> Response:
        created = int(gateway.started_at)
        data = [model_card(m, created) for m in gateway.config.models]
        if gateway.routers is not None:
            names = [n for n in gateway.routers.routers if n != AUTO]
            if gateway.routers.default is not None:
                names.insert(0, AUTO)
            data += [
                {"id": n, "object": "model", "created": created, "owned_by": "polyroute-router"}
                for n in names
            ]
        return _json({"object": "list", "data": data})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> Response:
        target = gateway.pool.resolve(model_id)
        return _json(model_card(target.model, int(gateway.started_at)))

    @app.get("/health")
    async def health() -> Response:
        checks = await gateway.health.get()
        breaker = gateway.chat.breaker
        models = {
            name: {"ready": h.ready, "detail": h.detail, "circuit": breaker.state(name)}
            for name, h in checks.items()
        }
        ready = any(h.ready for h in checks.values())
        # In a thread: the journal's size is a directory scan.
        recorder = dataclasses.asdict(await asyncio.to_thread(gateway.recorder.stats))
        body: dict[str, Any] = {
            "status": "ok" if ready else "unavailable",
            "version": __version__,
            "models": models,
            "recorder": recorder,
        }
        if gateway.routers is not None:
            body["routers"] = {n: c.to_json() for n, c in gateway.routers.coverage.items()}
            body["default_router"] = gateway.routers.default
        if gateway.engines.processes or gateway.engines.failed:
            body["engines"] = gateway.engines.status()
        body["weights"] = gateway.engines.provenance
        return _json(body, status=200 if ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if gateway.telemetry.metrics is None:
            return error_response(
                NotFound("Metrics are off: set telemetry.metrics: true to serve them")
            )
        # In a thread: a scrape of many series takes milliseconds the event loop should not lose.
        gateway.telemetry.metrics.set_recorder(await asyncio.to_thread(gateway.recorder.stats))
        body, content_type = await asyncio.to_thread(
            gateway.telemetry.metrics.exposition, request.headers.get("accept")
        )
        return Response(body, media_type=content_type)

    @app.get("/health/live")
    async def live() -> Response:
        return _json({"status": "ok"})

    if gateway.config.dashboard.enabled:
        app.include_router(gateway.dashboard.router())

    # Unknown routes and wrong methods get OpenAI-style bodies too.
    @app.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False
    )
    async def not_found(path: str) -> Response:
        return error_response(NotFound(f"Unknown request URL: /{path}. See /docs for the routes"))

    return app
