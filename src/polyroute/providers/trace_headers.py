"""The trace-context headers every upstream call of the current request carries.

The gateway sets them once per request (:mod:`polyroute.telemetry.propagation`); providers
that speak HTTP add them to each chat request they send, fallbacks and stream rescues
included. A context variable rather than a parameter: the provider interface (and every
plugin written against it) stays as it is, and a request without trace context costs one
lookup of an empty tuple.
"""

from __future__ import annotations

from contextvars import ContextVar

#: ``(name, value)`` pairs, e.g. ``(("traceparent", "00-..."), ("tracestate", "..."))``.
UPSTREAM_TRACE_HEADERS: ContextVar[tuple[tuple[str, str], ...]] = ContextVar(
    "polyroute_upstream_trace_headers", default=()
)
