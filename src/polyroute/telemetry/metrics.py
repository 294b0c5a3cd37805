"""Prometheus metrics: what ``GET /metrics`` shows, fed by one observer call per request.

Each gateway owns a :class:`~prometheus_client.CollectorRegistry` (never the process-wide
default), so several apps in one process (tests, embedding) keep separate counts. Under
``polyroute serve --workers N`` the same counters keep their values in files that every
worker's scrape adds up (:mod:`polyroute.telemetry.multiprocess`).

Label sets are bounded by the configuration: ``model`` is a configured model's name (the
one that answered) or ``unknown``, ``router`` a configured router's name or ``""`` for a
request that named its model directly. Nothing a client sends becomes a label value, so a
client that asks for ``model="nonsense"`` a million times adds no series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from polyroute.store.recorder import RecorderStats, RequestRecord
from polyroute.telemetry import multiprocess

#: The label value for a model or router that the configuration does not name.
UNKNOWN = "unknown"

# Buckets in seconds. The request buckets are the ones the OpenTelemetry GenAI conventions
# advise for gen_ai.client.operation.duration, with two more for long generations; the
# time-to-first-token buckets are those advised for gen_ai.server.time_to_first_token.
REQUEST_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
    10.24, 20.48, 40.96, 81.92, 163.84, 327.68,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 30.0,
)  # fmt: skip

_LABELS = ("model", "router")


@dataclass(slots=True)
class _Series:
    """The children of every metric for one (model, router): looked up once, then reused."""

    requests: dict[str, Counter]
    errors: dict[str, Counter]  # by HTTP status code, filled as codes occur
    input_tokens: Counter
    output_tokens: Counter
    cost: Counter
    unpriced: Counter
    duration: Histogram
    ttft: Histogram


class RecorderCollector(Collector):
    """The recorder's backpressure, from the stats it last gave (set before each scrape)."""

    def __init__(self) -> None:
        self.stats: RecorderStats | None = None

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        if s is None:
            return
        counters = (
            ("journaled", s.journaled, "Traces appended to the write-ahead journal."),
            ("written", s.written, "Traces of this process the database has."),
            ("dropped", s.dropped, "Traces lost: they could not even be journaled."),
            ("quarantined", s.quarantined, "Rows the database refused, kept in quarantine."),
            ("replayed", s.replayed, "Traces of earlier processes stored from the journal."),
        )
        for name, value, doc in counters:
            yield CounterMetricFamily(f"polyroute_recorder_{name}", doc, value=value)
        gauges = (
            ("queue_depth", s.queue_depth, "Traces journaled and not yet in the database."),
            ("journal_bytes", s.journal_bytes, "Bytes in the journal's segments."),
            ("writer_up", int(s.writer_alive), "1 while the trace writer process runs."),
        )
        for name, value, doc in gauges:
            yield GaugeMetricFamily(f"polyroute_recorder_{name}", doc, value=value)


class GatewayMetrics:
    """The gateway's Prometheus metrics; :meth:`observe` is the request-path observer."""

    def __init__(self, models: Iterable[str], routers: Iterable[str]) -> None:
        # No *_created series: they double the series count for a value Prometheus does not
        # use. (A process-wide switch of prometheus-client, for metrics created after it.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.models = frozenset(models)
        self.routers = frozenset(routers)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "polyroute_requests",
            "Chat completion requests, by answering model, router and HTTP status class.",
            [*_LABELS, "status_class"],
            registry=r,
        )
        self.errors = Counter(
            "polyroute_errors",
            "Requests that ended in an error (HTTP status >= 400; 499: client went away).",
            [*_LABELS, "code"],
            registry=r,
        )
        self.tokens = Counter(
            "polyroute_tokens",
            "Tokens the upstreams reported, by type (input or output).",
            [*_LABELS, "type"],
            registry=r,
        )
        self.cost = Counter(
            "polyroute_cost_usd",
            "Cost in USD of the requests whose price is known (free models add 0).",
            _LABELS,
            registry=r,
        )
        self.unpriced = Counter(
            "polyroute_unpriced_requests",
            "Requests with usage but no known price: their cost is missing from cost_usd.",
            _LABELS,
            registry=r,
        )
        self.duration = Histogram(
            "polyroute_request_duration_seconds",
            "Time to the whole answer (last chunk for streams) of successful requests.",
            _LABELS,
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "polyroute_time_to_first_token_seconds",
            "Time from the request to the first chunk of a streamed answer.",
            _LABELS,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.rescues = Counter(
            "polyroute_stream_rescues",
            "Streams that broke after they started and were continued by another attempt, "
            "by the model whose stream broke.",
            _LABELS,
            registry=r,
        )
        self._series: dict[tuple[str, str], _Series] = {}
        self._recorder = RecorderCollector()
        #: Several workers: what a scrape shows is every worker's files, added up.
        self.multiprocess = multiprocess.enabled()
        self._gauges: multiprocess.RecorderGauges | None = None
        self._merged: CollectorRegistry | None = None
        if self.multiprocess:
            self._gauges = multiprocess.RecorderGauges()
            self._merged = multiprocess.merged_registry()
        else:
            r.register(self._recorder)

    def set_recorder(self, stats: RecorderStats) -> None:
        """The recorder's stats, as the next exposition shows them (with several workers:
        as every worker's next scrape adds them up)."""
        if self._gauges is not None:
            self._gauges.publish(stats)
        else:
            self._recorder.stats = stats

    def _labels(self, record: RequestRecord) -> tuple[str, str]:
        model = record.model if record.model in self.models else UNKNOWN
        router = record.router
        if router is None:
            return model, ""
        return model, router if router in self.routers else UNKNOWN

    def _children(self, key: tuple[str, str]) -> _Series:
        # prometheus-client's labels() hashes and locks on every call; the bounded label
        # set lets us keep the children and skip that on the request path.
        series = self._series.get(key)
        if series is None:
            m, r = key
            series = _Series(
                requests={c: self.requests.labels(m, r, c) for c in ("2xx", "4xx", "5xx")},
                errors={},
                input_tokens=self.tokens.labels(m, r, "input"),
                output_tokens=self.tokens.labels(m, r, "output"),
                cost=self.cost.labels(m, r),
                unpriced=self.unpriced.labels(m, r),
                duration=self.duration.labels(m, r),
                ttft=self.ttft.labels(m, r),
            )
            self._series[key] = series
        return series

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request: 10–20 µs (``benchmarks/telemetry_overhead.py``).

        Never raises on odd data (counters refuse negative amounts, so those are skipped).
        """
        key = self._labels(record)
        s = self._children(key)
        status = record.status
        cls = "2xx" if status < 400 else ("4xx" if status < 500 else "5xx")
        s.requests[cls].inc()
        if status >= 400:
            # Codes are bounded: polyroute's own and the upstream's HTTP statuses.
            code = str(status)
            errors = s.errors.get(code)
            if errors is None:
                errors = s.errors[code] = self.errors.labels(key[0], key[1], code)
            errors.inc()
        elif record.latency_ms is not None:
            s.duration.observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            s.ttft.observe(record.ttft_ms / 1000)
        if record.input_tokens is not None and record.input_tokens > 0:
            s.input_tokens.inc(record.input_tokens)
        if record.output_tokens is not None and record.output_tokens > 0:
            s.output_tokens.inc(record.output_tokens)
        if record.cost_status == "unknown":
            s.unpriced.inc()
        elif record.cost_usd is not None and record.cost_usd > 0:
            s.cost.inc(record.cost_usd)
        if len(record.attempts) > 1:  # a rescue has a continuation: one attempt never is
            for attempt in record.attempts:
                if attempt.rescued:
                    model = attempt.model if attempt.model in self.models else UNKNOWN
                    self.rescues.labels(model, key[1]).inc()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the format the scraper asks for: ``(body, content type)``.

        Prometheus' text format unless ``accept`` asks for OpenMetrics.
        """
        encoder, content_type = choose_encoder(accept or "")
        if self._merged is not None:
            multiprocess.forget_dead_workers()
            return encoder(self._merged), content_type
        return encoder(self.registry), content_type
