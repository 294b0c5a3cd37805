"""W3C Trace Context on the request path: an incoming ``traceparent`` continues its trace.

What happens depends on whether polyroute makes spans (``telemetry.otlp_endpoint``):

- **tracing on**: the span observer (:meth:`~polyroute.telemetry.tracing.SpanObserver.begin`)
  reads the headers with OpenTelemetry's W3C propagator; the gateway's span becomes a child
  of the caller's span (or a root whose trace id is the polyroute trace id, as before), and
  the upstream gets a ``traceparent`` naming the gateway's span as its parent;
- **tracing off**: polyroute is not a participant, so, as the W3C recommendation asks of
  such an intermediary, a valid ``traceparent`` and its ``tracestate`` are passed to the
  upstream unchanged, and nothing is generated when the client sent none.

Either way the stored trace keeps the W3C trace id (``requests.otel_trace_id``, migration
0004), and with tracing on the gateway span's id too. A request without the header, tracing
off, costs one header lookup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from polyroute.providers.trace_headers import UPSTREAM_TRACE_HEADERS
from polyroute.store.recorder import RequestRecord

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: W3C Trace Context §3.2: version, trace-id, parent-id, flags (lower-case hex); version ff
#: is invalid. A future version may append fields after a dash, which are ignored here.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16

#: Given the request's ``traceparent`` and ``tracestate`` (None when absent), fills in the
#: record's trace ids and returns the headers its upstream calls carry.
Begin = Callable[[str | None, str | None, RequestRecord], tuple[tuple[str, str], ...]]


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` of a valid ``traceparent`` header, else None."""
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags


def pass_through(
    parent: str | None, state: str | None, record: RequestRecord
) -> tuple[tuple[str, str], ...]:
    """Tracing off: keep the caller's trace id, hand its headers on as they came."""
    if parent is None:
        return ()
    parsed = parse_traceparent(parent)
    if parsed is None:
        return ()  # an invalid traceparent is dropped, as the recommendation says
    record.otel_trace_id = parsed[0]
    if state is None:
        return ((TRACEPARENT, parent),)
    return ((TRACEPARENT, parent), (TRACESTATE, state))


def begin_request(
    begin: Begin | None, raw_headers: Iterable[tuple[bytes, bytes]], record: RequestRecord
) -> None:
    """Set the trace headers the request's upstream calls carry (see the module docstring).

    ``raw_headers`` is the ASGI scope's list (names in lower case): one pass over it is
    cheaper than a lookup in Starlette's ``Headers``, which lower-cases and encodes the key.
    """
    parent = state = None
    for name, value in raw_headers:
        # W3C trace context is ASCII; anything else is dropped, never forwarded (an HTTP
        # client would fail to encode it on the upstream call).
        if name == b"traceparent" and value.isascii():
            parent = value.decode("ascii")
        elif name == b"tracestate" and value.isascii():
            state = value.decode("ascii")
    if begin is not None:
        carried = begin(parent, state, record)
    elif parent is not None:
        carried = pass_through(parent, state, record)
    else:
        carried = ()
    # Set only when something changes: the variable lives in the connection's task.
    if carried or UPSTREAM_TRACE_HEADERS.get():
        UPSTREAM_TRACE_HEADERS.set(carried)
