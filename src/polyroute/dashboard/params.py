"""Reading the dashboard API's query parameters; a bad one is a 400 that names it.

Times are ISO 8601 (``2025-01-31T12:00:00Z``; no zone means UTC) or Unix seconds. A window
defaults to the last 24 hours; its bucket size defaults to a round step that gives at most
about 120 points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from polyroute.errors import InvalidRequest

#: Requests that no router chose for (the client named a model) are shown as this router.
DIRECT = "(direct)"
DEFAULT_WINDOW = timedelta(hours=24)
MAX_BUCKETS = 1500
#: Bucket sizes (seconds) a window is cut into when the caller names none.
_STEPS = (
    1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400,
)  # fmt: skip
_TARGET_BUCKETS = 120


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range ``[since, until)`` in UTC, cut into ``step``-second buckets."""

    since: datetime
    until: datetime
    step: int

    def bucket_starts(self) -> list[int]:
        """Unix seconds of each bucket's start, aligned to multiples of ``step``."""
        first = math.floor(self.since.timestamp() / self.step) * self.step
        end = self.until.timestamp()
        return list(range(first, math.ceil(end), self.step)) or [first]


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """What the trace list is narrowed to; ``None`` means any."""

    window: Window
    model: str | None = None
    #: A router's name, or :data:`DIRECT` for requests no router chose for.
    router: str | None = None
    #: ``"ok"`` (status < 400), ``"error"`` (>= 400), or one HTTP status.
    status: str | int | None = None
    limit: int = 50
    offset: int = 0
    #: Only the traces this key made (a non-admin dashboard key); None: everyone's.
    key_id: str | None = None


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"query parameter {param!r}: {message}", param=param)


def check_known(query: Mapping[str, str], known: set[str]) -> None:
    """Refuse parameters this endpoint does not take (a typo should not be ignored)."""
    for name in query:
        if name not in known:
            takes = ", ".join(sorted(known)) or "no parameters"
            raise _bad(name, f"unknown parameter; this endpoint takes {takes}")


def parse_time(param: str, value: str) -> datetime:
    """An ISO 8601 time or Unix seconds, as an aware UTC datetime."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or not 0 <= seconds < 253402300800:
            raise _bad(param, f"{value!r} is not a time")
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(
            param, f"{value!r} is not a time; use ISO 8601 (2025-01-31T12:00:00Z) or Unix seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_int(query: Mapping[str, str], param: str, default: int, lo: int, hi: int) -> int:
    """An integer parameter within ``[lo, hi]``."""
    raw = query.get(param)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(param, f"{raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise _bad(param, f"{value} is not between {lo} and {hi}")
    return value


def parse_window(query: Mapping[str, str], now: datetime | None = None) -> Window:
    """``since``, ``until`` and ``bucket`` (seconds) as a :class:`Window`."""
    until = parse_time("until", query["until"]) if "until" in query else None
    since = parse_time("since", query["since"]) if "since" in query else None
    until = until or (now or datetime.now(UTC))
    since = since or until - DEFAULT_WINDOW
    if since >= until:
        raise _bad("since", "must be before 'until'")
    span = (until - since).total_seconds()
    if "bucket" in query:
        step = parse_int(query, "bucket", 60, 1, 30 * 86400)
        if span / step > MAX_BUCKETS:
            raise _bad(
                "bucket",
                f"{step} s cuts this window into more than {MAX_BUCKETS} buckets; "
                f"use at least {math.ceil(span / MAX_BUCKETS)}",
            )
    else:
        step = next((s for s in _STEPS if span / s <= _TARGET_BUCKETS), _STEPS[-1])
        if span / step > MAX_BUCKETS:
            raise _bad("since", f"the window is too long; keep it under {MAX_BUCKETS} weeks")
    return Window(since, until, step)


def parse_status(value: str | None) -> str | int | None:
    """``ok``, ``error`` or an HTTP status code."""
    if value is None or value == "":
        return None
    if value in ("ok", "error"):
        return value
    if value.isdigit() and 100 <= int(value) <= 599:
        return int(value)
    raise _bad("status", f"{value!r} is not 'ok', 'error' or an HTTP status (100-599)")


def parse_trace_filter(query: Mapping[str, str]) -> TraceFilter:
    """The trace list's filters and page."""
    check_known(query, {"since", "until", "model", "router", "status", "limit", "offset"})
    return TraceFilter(
        window=parse_window({k: v for k, v in query.items() if k in ("since", "until")}),
        model=query.get("model") or None,
        router=query.get("router") or None,
        status=parse_status(query.get("status")),
        limit=parse_int(query, "limit", 50, 1, 500),
        offset=parse_int(query, "offset", 0, 0, 1_000_000),
    )
