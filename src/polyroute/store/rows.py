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


def _fitter(column: sa.Column[Any]) -> Fit:
    kind = column.type
    if column.name in _TIME_COLUMNS:
        return _time
    if isinstance(kind, sa.Boolean):
        return _boolean
    if isinstance(kind, sa.BigInteger):
        return _integer(64)
    if isinstance(kind, sa.Integer):
        return _integer(32)
    if isinstance(kind, sa.Float):
        return _float
    if isinstance(kind, sa.String):  # Text is a String without a length
        return _text(kind.length)
    raise TypeError(f"no rule to fit column {column.name} of type {kind}")


_REQUEST_FIT = tuple(_fitter(c) for c in schema.requests.c)
_ATTEMPT_FIT = tuple(_fitter(c) for c in schema.attempts.c)


def fit_values(values: Sequence[Any], fits: Sequence[Fit]) -> list[Any]:
    """``values`` fitted to their columns (see the module docstring)."""
    return [fit(v) for fit, v in zip(fits, values, strict=True)]


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
        fit_values(requests, _REQUEST_FIT),
        [fit_values(a, _ATTEMPT_FIT) for a in attempts],
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


def decode_line(line: bytes) -> tuple[list[Any], list[list[Any]]]:
    """The request values and attempt values of a journal line (raises ValueError if bad)."""
    data = orjson.loads(line)
    if not isinstance(data, list) or len(data) != 3 or data[0] != LINE_VERSION:
        raise ValueError("not a polyroute journal line (version 1)")
    request, attempts = data[1], data[2]
    if len(request) != len(REQUEST_COLUMNS) or any(
        len(a) != len(ATTEMPT_COLUMNS) for a in attempts
    ):
        raise ValueError("journal line has the wrong number of columns")
    request[_REQUEST_TIME] = _PARSE_TIME(request[_REQUEST_TIME])
    for a in attempts:
        a[_ATTEMPT_TIME] = _PARSE_TIME(a[_ATTEMPT_TIME])
    return request, attempts
