"""W3C Trace Context across hops: a client's ``traceparent`` continues through the gateway
to the upstream, with tracing on (the gateway's span joins the trace) and off (passed on).

Real parts: the gateway under uvicorn, the official ``openai`` client, the echo upstream on
127.0.0.1 recording the headers it got, an OTLP/HTTP receiver, and the SQLite store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream
from tests.support.otlp_receiver import ReceivedSpan, running_otlp_receiver

from polyroute.config import Config
from polyroute.gateway import create_app
from polyroute.store import rows
from polyroute.telemetry.propagation import begin_request, parse_traceparent

USER = [{"role": "user", "content": "hello there"}]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE}-{PARENT}-01"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def app_config(base_url: str, db_url: str, **telemetry: Any) -> Config:
    raw = remote_config(base_url, db_url).model_dump()
    raw["telemetry"] = telemetry
    return Config.model_validate(raw)


@contextmanager
def client_for(config: Config) -> Iterator[openai.OpenAI]:
    with serving(create_app(config)) as base_url:
        yield openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def stored(db_url: str, request_id: str) -> tuple[str | None, str | None]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT otel_trace_id, otel_span_id FROM requests WHERE id = :id"),
                {"id": request_id},
            ).one()
    finally:
        engine.dispose()
    return row[0], row[1]


def fresh_trace_headers(echo_upstream: EchoUpstream) -> list[dict[str, str]]:
    """The upstream's record of trace headers, emptied: the session's upstream records only
    its first 1000 requests, so a test starts its own count."""
    echo_upstream.stats.bodies.clear()
    echo_upstream.stats.trace_headers.clear()
    return echo_upstream.stats.trace_headers


def wait_for(spans: list[ReceivedSpan], n: int) -> None:
    for _ in range(100):  # the exporter's last POST may land just after shutdown
        if len(spans) >= n:
            return
        time.sleep(0.05)


def test_with_tracing_on_the_gateway_span_joins_the_callers_trace(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    seen = fresh_trace_headers(echo_upstream)
    first = len(seen)
    with running_otlp_receiver() as collector:
        config = app_config(echo_upstream.base_url, db_url, otlp_endpoint=collector.url)
        with client_for(config) as client:
            headers = {"traceparent": INCOMING, "tracestate": STATE}
            answer = client.chat.completions.create(
                model="echo",
                messages=USER,
                extra_headers=headers,  # type: ignore[arg-type]
            )
            chunks = list(
                client.chat.completions.create(
                    model="echo",
                    messages=USER,
                    stream=True,
                    extra_headers=headers,  # type: ignore[arg-type]
                )
            )
            plain = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
            unsampled = client.chat.completions.create(
                model="echo", messages=USER,  # type: ignore[arg-type]
                extra_headers={"traceparent": f"00-{TRACE}-{PARENT}-00"},
            )  # fmt: skip
        wait_for(collector.spans, 3)
    spans = {s.attributes["gen_ai.response.id"]: s for s in collector.spans}
    assert set(spans) == {answer.id, chunks[0].id, plain.id}  # the unsampled one is not exported
    upstream = seen[first:]
    assert len(upstream) == 4

    for i, request_id in enumerate([answer.id, chunks[0].id]):
        span = spans[request_id]
        assert span.trace_id == TRACE  # the caller's trace, not a new one
        assert span.parent_span_id == PARENT  # a child of the caller's span
        # The upstream call is a child of the gateway's span, with the caller's tracestate.
        assert upstream[i] == {"traceparent": f"00-{TRACE}-{span.span_id}-01", "tracestate": STATE}
        assert stored(db_url, request_id) == (TRACE, span.span_id)
        assert span.attributes["polyroute.trace_id"] == request_id

    # No traceparent: a root span whose trace id is the request id, carried upstream.
    own = plain.id.removeprefix("chatcmpl-")
    root = spans[plain.id]
    assert (root.trace_id, root.parent_span_id) == (own, "")
    assert upstream[2] == {"traceparent": f"00-{own}-{root.span_id}-01"}
    assert stored(db_url, plain.id) == (own, root.span_id)

    # The caller decided not to sample: the upstream is told so too.
    tp = parse_traceparent(upstream[3]["traceparent"])
    assert tp is not None and tp[0] == TRACE and tp[2] == "00"
    assert stored(db_url, unsampled.id) == (TRACE, tp[1])


def test_with_tracing_off_a_traceparent_passes_through_unchanged(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    seen = fresh_trace_headers(echo_upstream)
    first = len(seen)
    with client_for(app_config(echo_upstream.base_url, db_url)) as client:
        passed = client.chat.completions.create(
            model="echo", messages=USER,  # type: ignore[arg-type]
            extra_headers={"traceparent": INCOMING, "tracestate": STATE},
        )  # fmt: skip
        streamed = list(
            client.chat.completions.create(
                model="echo", messages=USER, stream=True,  # type: ignore[arg-type]
                extra_headers={"traceparent": INCOMING},
            )
        )  # fmt: skip
        none = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
        bad = client.chat.completions.create(
            model="echo", messages=USER,  # type: ignore[arg-type]
            extra_headers={"traceparent": f"00-{'0' * 32}-{PARENT}-01", "tracestate": STATE},
        )  # fmt: skip
    assert seen[first:] == [
        {"traceparent": INCOMING, "tracestate": STATE},
        {"traceparent": INCOMING},
        {},  # nothing generated when the client sent nothing
        {},  # an invalid traceparent (all-zero trace id) is dropped, with its tracestate
    ]
    assert stored(db_url, passed.id) == (TRACE, None)  # no gateway span: no span id
    assert stored(db_url, streamed[0].id) == (TRACE, None)
    assert stored(db_url, none.id) == (None, None)
    assert stored(db_url, bad.id) == (None, None)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (INCOMING, (TRACE, PARENT, "01")),
        (f" {INCOMING} ", (TRACE, PARENT, "01")),
        (f"01-{TRACE}-{PARENT}-01-future", (TRACE, PARENT, "01")),  # a later version's extra field
        (f"00-{TRACE}-{PARENT}-01-extra", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-{PARENT}-01", None),
        (f"00-{'0' * 32}-{PARENT}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE.upper()}-{PARENT}-01", None),  # lower-case hex only
        (f"00-{TRACE[:-1]}-{PARENT}-01", None),
        ("", None),
    ],
)
def test_traceparent_parsing_follows_the_w3c_format(
    value: str, parsed: tuple[str, str, str] | None
) -> None:
    assert parse_traceparent(value) == parsed


def test_a_journal_line_from_before_migration_0004_is_still_read() -> None:
    values = [None] * len(rows.REQUEST_COLUMNS)
    values[rows.REQUEST_COLUMNS.index("id")] = "chatcmpl-old"
    values[rows.REQUEST_COLUMNS.index("created_at")] = "2026-12-01T00:00:00+00:00"
    line = rows.encode_line(values, [])
    assert rows.REQUEST_COLUMNS[-2:] == ("otel_trace_id", "otel_span_id")
    old = line.replace(b",null,null],[]]", b"],[]]")  # the two new columns were not there
    assert old != line
    request, _ = rows.decode_line(old)
    assert request[0] == "chatcmpl-old" and request[-2:] == [None, None]
    with pytest.raises(ValueError, match="number of request columns"):
        rows.decode_line(line.replace(b",null,null,null,null],[]]", b"],[]]"))


def test_trace_headers_that_are_not_ascii_are_dropped_not_forwarded() -> None:
    """An HTTP client cannot encode them on the upstream call: forwarding one would fail
    the request; W3C trace context is ASCII."""
    import contextvars
    from datetime import UTC, datetime

    from polyroute.providers.trace_headers import UPSTREAM_TRACE_HEADERS
    from polyroute.store.recorder import RequestRecord

    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    def carried(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
        def run() -> tuple[tuple[str, str], ...]:
            record = RequestRecord(
                id="chatcmpl-x", created_at=datetime.now(UTC), requested_model="m", stream=False
            )
            begin_request(None, headers, record)  # tracing off: passed through
            return tuple(UPSTREAM_TRACE_HEADERS.get())

        return contextvars.copy_context().run(run)

    assert carried([(b"traceparent", parent), (b"tracestate", "rojo=\xe9".encode("latin-1"))]) == (
        ("traceparent", parent.decode()),
    )
    assert carried([(b"traceparent", parent + "\xe9".encode("latin-1"))]) == ()
    both = carried([(b"traceparent", parent), (b"tracestate", b"rojo=00f067aa0ba902b7")])
    assert both == (("traceparent", parent.decode()), ("tracestate", "rojo=00f067aa0ba902b7"))
