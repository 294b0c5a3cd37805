"""OpenTelemetry spans for routed requests, after the GenAI semantic conventions.

Imported only when ``telemetry.otlp_endpoint`` is set: with tracing off, the OpenTelemetry
SDK is never loaded and no observer runs. When on, :class:`SpanObserver` builds one span
per finished request *after the fact*, from the record's start time and latency, and hands
it to a :class:`~opentelemetry.sdk.trace.export.BatchSpanProcessor`, whose thread exports
OTLP/HTTP in the background. On the request path that is an append to a bounded queue;
when the collector is slow or down, spans are dropped, requests never wait.

The span's trace id is the polyroute trace id (the hex part of ``chatcmpl-<hex>``, the id
the client gets back and feedback refers to), so one id finds the request in both places,
unless the client sent a W3C ``traceparent``: then the span is a child of the caller's span
in the caller's trace (:meth:`SpanObserver.begin`, and :mod:`.propagation`). Its span id is
chosen when the request starts, so that the upstream's ``traceparent`` can name it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from polyroute import __version__
from polyroute.store.recorder import RequestRecord
from polyroute.telemetry.propagation import TRACEPARENT, TRACESTATE

if TYPE_CHECKING:
    from polyroute.config import Config

# Attribute names of the GenAI semantic conventions (development status; spelled out here
# rather than imported from the incubating semconv module, whose names move between releases).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
ERROR_TYPE = "error.type"

log = logging.getLogger(__name__)

#: The instrumentation scope the spans are reported under.
SCOPE = "polyroute.gateway"
_TRACES_PATH = "/v1/traces"
_ROOT = Context()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector's base URL (``http://host:4318``).

    A URL that already ends in ``/v1/traces`` is kept as it is.
    """
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(_TRACES_PATH) else endpoint + _TRACES_PATH


class _RecordIdGenerator(RandomIdGenerator):
    """Gives the next span the ids set in :attr:`next_trace_id` and :attr:`next_span_id`,
    else random ones.

    Safe without a lock: spans are only started from the event loop's thread.
    """

    def __init__(self) -> None:
        self.next_trace_id = 0
        self.next_span_id = 0

    def generate_trace_id(self) -> int:
        trace_id, self.next_trace_id = self.next_trace_id, 0
        return trace_id or super().generate_trace_id()

    def generate_span_id(self) -> int:
        span_id, self.next_span_id = self.next_span_id, 0
        return span_id or super().generate_span_id()


def _ns(t: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (a float product is not)."""
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def _trace_id_of(record_id: str) -> int:
    """The 128-bit trace id inside ``chatcmpl-<32 hex>``; 0 (meaning: random) otherwise."""
    hex_part = record_id.rpartition("-")[2]
    if len(hex_part) != 32:
        return 0
    try:
        return int(hex_part, 16)
    except ValueError:
        return 0


class SpanObserver:
    """The request-path observer that turns each :class:`RequestRecord` into a span."""

    def __init__(
        self,
        processor: SpanProcessor,
        *,
        service_name: str = "polyroute",
        sample_ratio: float = 1.0,
        provider_kinds: Mapping[str, str] | None = None,
        provider_urls: Mapping[str, str | None] | None = None,
        span_names: frozenset[str] = frozenset(),
    ) -> None:
        self._ids = _RecordIdGenerator()
        self.provider = TracerProvider(
            resource=Resource.create(
                {"service.name": service_name, "service.version": __version__}
            ),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
            id_generator=self._ids,
            # The gateway shuts the provider down itself (flushing queued spans) on stop.
            shutdown_on_exit=False,
        )
        self._root_sampler = TraceIdRatioBased(sample_ratio)
        self._propagator = TraceContextTextMapPropagator()
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(SCOPE, __version__)
        self._kinds = dict(provider_kinds or {})
        # server.address/port per provider, parsed once rather than per request.
        self._servers: dict[str, tuple[str, int]] = {}
        for name, url in (provider_urls or {}).items():
            if url:
                parts = urlsplit(url)
                port = parts.port or (443 if parts.scheme == "https" else 80)
                if parts.hostname:
                    self._servers[name] = (parts.hostname, port)
        # Span names carry the requested model only when it is configured, so that a client
        # sending random model names cannot blow up span-name cardinality in the backend.
        self._span_names = span_names
        self.failures = 0

    @classmethod
    def otlp(cls, config: Config) -> SpanObserver:
        """The observer for ``config.telemetry``, exporting OTLP/HTTP in the background."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        t = config.telemetry
        assert t.otlp_endpoint is not None
        exporter = OTLPSpanExporter(
            endpoint=traces_url(t.otlp_endpoint),
            # None lets the exporter read OTEL_EXPORTER_OTLP_HEADERS (keys stay out of YAML).
            headers=dict(t.otlp_headers) or None,
            timeout=t.export_timeout_s,
        )
        processor = BatchSpanProcessor(exporter, max_queue_size=t.max_queued_spans)
        return cls.from_config(config, processor)

    @classmethod
    def from_config(cls, config: Config, processor: SpanProcessor) -> SpanObserver:
        """An observer for ``config``'s providers and models that sends spans to ``processor``."""
        names = {m.name for m in config.models}
        names.update(a for m in config.models for a in m.aliases)
        names.update(config.routers)
        if config.routers:
            names.add("auto")
        return cls(
            processor,
            service_name=config.telemetry.service_name,
            sample_ratio=config.telemetry.sample_ratio,
            provider_kinds={n: p.api for n, p in config.providers.items()},
            provider_urls={n: p.base_url for n, p in config.providers.items()},
            span_names=frozenset(names),
        )

    def begin(
        self, incoming: str | None, state: str | None, record: RequestRecord
    ) -> tuple[tuple[str, str], ...]:
        """At the request's start: its trace (the caller's, or its own) and its span's id;
        returns the ``traceparent`` (and ``tracestate``) its upstream calls carry."""
        try:
            return self._begin(incoming, state, record)
        except Exception:
            self.failures += 1
            if self.failures % 1000 == 1:
                log.exception("could not read the trace context (%d failures)", self.failures)
            return ()

    def _begin(
        self, incoming: str | None, state: str | None, record: RequestRecord
    ) -> tuple[tuple[str, str], ...]:
        trace_id, sampled = 0, False
        if incoming is None:
            state = None  # a tracestate without its traceparent means nothing
        else:
            carrier = {TRACEPARENT: incoming}
            if state is not None:
                carrier[TRACESTATE] = state
            context = self._propagator.extract(carrier)
            parent = get_current_span(context).get_span_context()
            if parent.is_valid:
                record.trace_parent = context
                trace_id, sampled = parent.trace_id, parent.trace_flags.sampled
            else:
                state = None  # an invalid traceparent takes its tracestate with it
        if not trace_id:
            trace_id = _trace_id_of(record.id) or self._ids.generate_trace_id()
            decision = self._root_sampler.should_sample(None, trace_id, "chat").decision
            sampled = decision is Decision.RECORD_AND_SAMPLE
        span_id = self._ids.generate_span_id()
        record.otel_trace_id, record.otel_span_id = f"{trace_id:032x}", f"{span_id:016x}"
        value = f"00-{record.otel_trace_id}-{record.otel_span_id}-{'01' if sampled else '00'}"
        return (
            ((TRACEPARENT, value),)
            if state is None
            else ((TRACEPARENT, value), (TRACESTATE, state))
        )

    def __call__(self, record: RequestRecord) -> None:
        # Observers must not raise: a tracing bug must not turn an answer into an error.
        try:
            self._span(record)
        except Exception:
            self.failures += 1
            if self.failures % 1000 == 1:
                log.exception("could not build a span (%d failures so far)", self.failures)

    def _span(self, record: RequestRecord) -> None:
        start_ns = _ns(record.created_at)
        end_ns = start_ns + int((record.latency_ms or 0.0) * 1e6)
        requested = record.requested_model
        kind = self._kinds.get(record.provider or "")
        attributes: dict[str, str | bool | int | float] = {
            OPERATION: "chat",
            REQUEST_MODEL: requested,
            REQUEST_STREAM: record.stream,
            RESPONSE_ID: record.id,
            "polyroute.trace_id": record.id,
        }
        if kind is not None:
            attributes[PROVIDER] = kind
        if record.model is not None:
            attributes[RESPONSE_MODEL] = record.model
        if record.provider is not None:
            attributes["polyroute.provider"] = record.provider
            server = self._servers.get(record.provider)
            if server is not None:
                attributes["server.address"], attributes["server.port"] = server
        if record.upstream_model is not None:
            attributes["polyroute.upstream_model"] = record.upstream_model
        if record.router is not None:
            attributes["polyroute.router"] = record.router
        if record.attempts:
            attributes["polyroute.attempts"] = len(record.attempts)
        if record.input_tokens is not None:
            attributes[INPUT_TOKENS] = record.input_tokens
        if record.output_tokens is not None:
            attributes[OUTPUT_TOKENS] = record.output_tokens
        if record.cached_tokens:
            attributes[CACHE_READ_TOKENS] = record.cached_tokens
        if record.ttft_ms is not None:
            attributes[TIME_TO_FIRST_CHUNK] = record.ttft_ms / 1000
        if record.cost_usd is not None:
            attributes["polyroute.cost_usd"] = record.cost_usd
        if record.cost_status is not None:
            attributes["polyroute.cost_status"] = record.cost_status
        failed = record.status >= 400
        if failed:
            # The conventions allow a status code as error.type; it is what polyroute has.
            attributes[ERROR_TYPE] = str(record.status)
        name = f"chat {requested}" if requested in self._span_names else "chat"
        if record.otel_trace_id is not None:  # begin() chose the ids
            self._ids.next_trace_id = int(record.otel_trace_id, 16)
        else:
            self._ids.next_trace_id = _trace_id_of(record.id)
        if record.otel_span_id is not None:
            self._ids.next_span_id = int(record.otel_span_id, 16)
        try:
            span = self.tracer.start_span(
                name,
                # The caller's span when it sent a traceparent; else a root whose trace id
                # is the request's own id.
                context=record.trace_parent or _ROOT,
                # The conventions: CLIENT for a call to a remote model, INTERNAL in-process.
                kind=SpanKind.INTERNAL if kind == "llama_cpp" else SpanKind.CLIENT,
                attributes=attributes,
                start_time=start_ns,
            )
        finally:  # an id not taken (a child takes its parent's trace id) must not reach the next
            self._ids.next_trace_id = self._ids.next_span_id = 0
        if failed:
            span.set_status(Status(StatusCode.ERROR, record.error))
        if len(record.attempts) > 1:
            # Fallbacks happened: one event per upstream try, at the time it started.
            for a in record.attempts:
                event: dict[str, str | int | float] = {
                    "polyroute.attempt": a.n,
                    RESPONSE_MODEL: a.model,
                    "polyroute.provider": a.provider,
                    "polyroute.status": a.status,
                }
                if a.latency_ms is not None:
                    event["polyroute.latency_ms"] = a.latency_ms
                if a.error is not None:
                    event[ERROR_TYPE] = str(a.status)
                    event["polyroute.error"] = a.error
                span.add_event("polyroute.attempt", event, timestamp=_ns(a.started_at))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Export what is queued (bounded by the export timeout), then stop the thread."""
        self.provider.shutdown()
