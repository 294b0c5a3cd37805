"""What W3C trace context costs on the chat path, per request, in microseconds.

`begin_request` runs once per chat request. It is timed on the headers an openai client
sends in the cases that matter: no header with tracing off (the common
case, which must stay negligible), a traceparent passed through, and tracing on with and
without an incoming header. The baseline, measured in the same run, is building the
request's ``RequestRecord`` (which every request does anyway).
Headers are the ASGI scope's raw list, as the gateway passes them.

    PYTHONPATH=src python benchmarks/trace_context.py
"""

from __future__ import annotations

import timeit
import uuid
from datetime import UTC, datetime

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from polyroute.store.recorder import RequestRecord
from polyroute.telemetry.propagation import begin_request
from polyroute.telemetry.tracing import SpanObserver

N = 200_000
# An ASGI scope's headers, as the openai client sends them (names in lower case).
PLAIN = [
    (b"host", b"127.0.0.1:8000"), (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"), (b"accept", b"application/json"),
    (b"content-type", b"application/json"), (b"user-agent", b"OpenAI/Python 1.99.0"),
    (b"x-stainless-lang", b"python"), (b"x-stainless-package-version", b"1.99.0"),
    (b"x-stainless-os", b"Linux"), (b"x-stainless-arch", b"x64"),
    (b"x-stainless-runtime", b"CPython"), (b"authorization", b"Bearer sk-x"),
    (b"content-length", b"80"),
]  # fmt: skip
TRACED = [*PLAIN, (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]


def record() -> RequestRecord:
    return RequestRecord(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created_at=datetime.now(UTC),
        requested_model="",
        stream=False,
    )


def per_call_us(stmt: object) -> float:
    return min(timeit.repeat(stmt, number=N, repeat=3)) / N * 1e6  # type: ignore[arg-type]


def main() -> None:
    spans = SpanObserver(SimpleSpanProcessor(InMemorySpanExporter()))
    r = record()
    baseline = per_call_us(record)
    rows = [
        ("baseline: a RequestRecord", baseline),
        ("tracing off, no traceparent", per_call_us(lambda: begin_request(None, PLAIN, r))),
        ("tracing off, traceparent passed on", per_call_us(lambda: begin_request(None, TRACED, r))),
        ("tracing on, no traceparent", per_call_us(lambda: begin_request(spans.begin, PLAIN, r))),
        (
            "tracing on, traceparent continued",
            per_call_us(lambda: begin_request(spans.begin, TRACED, r)),
        ),
    ]
    print(f"{'case':40} {'µs/request':>10} {'× baseline':>10}")
    for name, us in rows:
        print(f"{name:40} {us:10.2f} {us / baseline:10.2f}")
    print("reproduce: PYTHONPATH=src python benchmarks/trace_context.py")


if __name__ == "__main__":
    main()
