"""A trace as one journal line: values fitted to the schema, then encoded once.

The recorder turns each finished request into one line of JSON on the request path (a few
microseconds), appends it to the journal, and the writer process decodes it into rows.
Every value is fitted to its column here, before it is written anywhere, so that one
request cannot make its batch fail: a string longer than its ``String(n)`` column is cut
to ``n`` characters, a NUL character (which PostgreSQL refuses in text) becomes U+FFFD,
an integer outside the column's range and a non-finite float become NULL (an unknown
count is honest; a clamped one would be a made-up number), and JSON nested deeper than
``MAX_JSON_DEPTH`` is cut there with a marker.

A line is ``[1, request_values, [attempt_values, ...]]``: values in the column order of
:data:`REQUEST_COLUMNS` and :data:`ATTEMPT_COLUMNS`, times as ISO 8601 strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from polyroute.store import schema
from polyroute.store.redact import redact

LINE_VERSION = 1
#: Request bodies and decisions are stored nested at most this deep (orjson stops at 255).
MAX_JSON_DEPTH = 64
_CUT = "[cut: nested deeper than 64 levels]"

REQUEST_COLUMNS: tuple[str, ...] = tuple(c.name for c in schema.requests.c)
ATTEMPT_COLUMNS: tuple[str, ...] = tuple(c.name for c in schema.attempts.c)
_TIME_COLUMNS = {"created_at", "started_at"}

Fit = Callable[[Any], Any]


def _text(limit: int | None) -> Fit:
    def fit(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            value = str(value)
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        return value[:limit] if limit is not None and len(value) > limit else value

    return fit


def _integer(bits: int) -> Fit:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def fit(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return None if value is None else int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            value = int(value)
        if not isinstance(value, int):
            return None
        return value if low <= value <= high else None

    return fit


def _float(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = float(value) if abs(value) < 2**1000 else math.inf
    if not isinstance(value, float) or not math.isfinite(value):
        return None
    return value


def _boolean(value: Any) -> Any:
    return None if value is None else bool(value)


def _time(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class _TableFit:
    """Fits a row of one table: a cheap type check per value, the full rule only on a misfit.

    It runs on the request path for every trace, so the common case (a value of the right
    type and size) costs a comparison or two, not a function call.
    """

    def __init__(self, table: sa.Table) -> None:
        self.width = len(table.c)
        self.texts: list[tuple[int, int]] = []  # (index, length limit; 0: none)
        self.ints: list[tuple[int, int, int]] = []  # (index, low, high)
        self.floats: list[int] = []
        self.others: list[tuple[int, Fit]] = []  # booleans and times
        for i, column in enumerate(table.c):
            kind = column.type
            if column.name in _TIME_COLUMNS:
                self.others.append((i, _time))
            elif isinstance(kind, sa.Boolean):
                self.others.append((i, _boolean))
            elif isinstance(kind, sa.Integer):
                self.ints.append((i, *(_INT64 if isinstance(kind, sa.BigInteger) else _INT32)))
            elif isinstance(kind, sa.Float):
                self.floats.append(i)
            elif isinstance(kind, sa.String):  # Text is a String without a length
                self.texts.append((i, kind.length or 0))
            else:
                raise TypeError(f"no rule to fit column {column.name} of type {kind}")

    def __call__(self, values: Sequence[Any]) -> list[Any]:
        if len(values) != self.width:
            raise ValueError(f"{len(values)} values for {self.width} columns")
        out = list(values)
        for i, limit in self.texts:
            v = out[i]
            if v is not None and (
                v.__class__ is not str or "\x00" in v or (limit and len(v) > limit)
            ):
                out[i] = _text(limit or None)(v)
        for i, low, high in self.ints:
            v = out[i]
            if v is not None and (v.__class__ is not int or not low <= v <= high):
                out[i] = _integer(64 if high > _INT32[1] else 32)(v)
        for i in self.floats:
            v = out[i]
            # v - v is 0.0 for a finite float, NaN for an infinity or NaN.
            if v is not None and (v.__class__ is not float or v - v != 0.0):
                out[i] = _float(v)
        for i, fit in self.others:
            out[i] = fit(out[i])
        return out


_REQUEST_FIT = _TableFit(schema.requests)
_ATTEMPT_FIT = _TableFit(schema.attempts)


def _depth_cut_iteratively(value: Any, depth: int) -> Any:
    # A body can be nested ~1000 deep (orjson's parser limit): recursing that far is
    # Python's limit too, so the cut walks an explicit stack.
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, depth)]
    while stack:
        item, parent, key, left = stack.pop()
        if isinstance(item, dict | list | tuple):
            if left <= 0:
                parent[key] = _CUT
                continue
            if isinstance(item, dict):
                copy: Any = {}
                for k, v in item.items():
                    copy[k] = None
                    stack.append((v, copy, k, left - 1))
            else:
                copy = [None] * len(item)
                for i, v in enumerate(item):
                    stack.append((v, copy, i, left - 1))
            parent[key] = copy
        else:
            parent[key] = item
    return root[0]


def encode_json(value: Any, *, secrets: bool = False) -> str:
    """``value`` as stored in a JSON text column: redacted unless ``secrets``, depth-capped."""
    try:
        data = value if secrets else redact(value)
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()
    except (RecursionError, orjson.JSONEncodeError, TypeError):
        pass
    cut = _depth_cut_iteratively(value, MAX_JSON_DEPTH)
    try:
        data = cut if secrets else redact(cut)
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()
    except (RecursionError, orjson.JSONEncodeError, TypeError) as e:
        return orjson.dumps({"unencodable": f"{type(e).__name__}: {e}"}).decode()


def encode_line(requests: Sequence[Any], attempts: Sequence[Sequence[Any]]) -> bytes:
    """One journal line for a request's values and its attempts' values (fitted here)."""
    line = [
        LINE_VERSION,
        _REQUEST_FIT(requests),
        [_ATTEMPT_FIT(a) for a in attempts],
    ]
    try:
        return orjson.dumps(line) + b"\n"
    except orjson.JSONEncodeError:
        # A lone surrogate in some text: orjson refuses what UTF-8 cannot hold.
        return orjson.dumps(_valid_utf8(line)) + b"\n"


def _valid_utf8(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_valid_utf8(v) for v in value]
    return value


_REQUEST_TIME = REQUEST_COLUMNS.index("created_at")
_ATTEMPT_TIME = ATTEMPT_COLUMNS.index("started_at")
_PARSE_TIME = datetime.fromisoformat
_REQUEST_WIDTH, _ATTEMPT_WIDTH = len(REQUEST_COLUMNS), len(ATTEMPT_COLUMNS)
#: Request columns before migration 0004 (otel_trace_id, otel_span_id).
_REQUEST_WIDTH_0003 = _REQUEST_WIDTH - 2


def decode_line(line: bytes) -> tuple[list[Any], list[list[Any]]]:
    """The request values and attempt values of a journal line (raises ValueError if bad)."""
    data = orjson.loads(line)
    if not isinstance(data, list) or len(data) != 3 or data[0] != LINE_VERSION:
        raise ValueError("not a polyroute journal line (version 1)")
    request, attempts = data[1], data[2]
    if len(request) < _REQUEST_WIDTH and len(request) >= _REQUEST_WIDTH_0003:
        # Journaled before migration 0004 added trailing columns: those are NULL.
        request.extend([None] * (_REQUEST_WIDTH - len(request)))
    if len(request) != _REQUEST_WIDTH:
        raise ValueError("journal line has the wrong number of request columns")
    request[_REQUEST_TIME] = _PARSE_TIME(request[_REQUEST_TIME])
    for a in attempts:
        if len(a) == _ATTEMPT_WIDTH - 1:
            a.append(None)  # journaled before migration 0004 added ``rescued``: unknown
        elif len(a) != _ATTEMPT_WIDTH:
            raise ValueError("journal line has the wrong number of attempt columns")
        a[_ATTEMPT_TIME] = _PARSE_TIME(a[_ATTEMPT_TIME])
    return request, attempts
