"""``POST /v1/feedback``: a score for a trace, stored, and taught to the router that chose.

The body is ``{"trace_id", "score", "source"?, "comment"?}``; ``trace_id`` is the ``id`` of
the chat completion. ``score`` is a number in [0, 1], a boolean (1 or 0), or a category
name that ``feedback.categories`` maps to a number. Only the first feedback on a trace
teaches its online router (so one noisy client cannot outvote the rest by repeating itself);
every feedback is stored.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from polyroute.config import Config
from polyroute.errors import InvalidRequest, NotFound
from polyroute.gateway.learning import OnlineLearning, RecentTrace, RecentTraces, is_contextual
from polyroute.gateway.protocol import read_json_body
from polyroute.routing.base import RouteRequest
from polyroute.routing.prompt import flatten_messages
from polyroute.store.db import Store

_FIELDS = ("trace_id", "score", "source", "comment")
_MAX_FEEDBACK_BYTES = 64 * 1024
_MAX_SOURCE = 200
_MAX_COMMENT = 10_000


class TraceNotFound(NotFound):
    code = "trace_not_found"


@dataclass(frozen=True, slots=True)
class FeedbackInput:
    """A validated feedback request."""

    trace_id: str
    score: float
    kind: str  # "number" | "boolean" | "category"
    label: str | None
    source: str | None
    comment: str | None


def _category_key(name: str) -> str:
    return name.strip().casefold().replace("-", "_").replace(" ", "_")


def parse_feedback(body: dict[str, Any], categories: dict[str, float]) -> FeedbackInput:
    """Validate a feedback body; InvalidRequest names the field at fault."""
    unknown = [k for k in body if k not in _FIELDS]
    if unknown:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {unknown[0]} (known: {', '.join(_FIELDS)})",
            param=unknown[0],
        )
    trace_id = body.get("trace_id")
    if trace_id is None:
        raise InvalidRequest("Missing required parameter: 'trace_id'", param="trace_id")
    if not isinstance(trace_id, str) or not 0 < len(trace_id) <= 64:
        raise InvalidRequest(
            "Invalid value for 'trace_id': expected the id of a chat completion "
            "(a string of at most 64 characters)",
            param="trace_id",
        )
    if "score" not in body:
        raise InvalidRequest("Missing required parameter: 'score'", param="score")
    score, kind, label = _score(body["score"], categories)
    source, comment = body.get("source"), body.get("comment")
    if source is not None and (not isinstance(source, str) or len(source) > _MAX_SOURCE):
        raise InvalidRequest(
            f"Invalid value for 'source': expected a string of at most {_MAX_SOURCE} "
            "characters (e.g. 'user' or a grader's name)",
            param="source",
        )
    if comment is not None and (not isinstance(comment, str) or len(comment) > _MAX_COMMENT):
        raise InvalidRequest(
            f"Invalid value for 'comment': expected a string of at most {_MAX_COMMENT} characters",
            param="comment",
        )
    return FeedbackInput(trace_id, score, kind, label, source, comment)


def _score(value: Any, categories: dict[str, float]) -> tuple[float, str, str | None]:
    if isinstance(value, bool):
        return (1.0 if value else 0.0), "boolean", None
    if isinstance(value, int | float):
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise InvalidRequest(
                f"Invalid value for 'score': {value!r} is not in [0, 1]", param="score"
            )
        return float(value), "number", None
    if isinstance(value, str):
        keys = {_category_key(k): k for k in categories}
        name = keys.get(_category_key(value))
        if name is None:
            raise InvalidRequest(
                f"Invalid value for 'score': unknown category {value!r}; known categories: "
                f"{', '.join(categories)} (feedback.categories in the config)",
                param="score",
            )
        return categories[name], "category", name
    raise InvalidRequest(
        "Invalid value for 'score': expected a number in [0, 1], true or false, or a "
        f"category name ({', '.join(categories)})",
        param="score",
    )


class FeedbackService:
    """Stores feedback and teaches the online router that decided the trace."""

    def __init__(
        self,
        config: Config,
        store: Store,
        recent: RecentTraces,
        learning: OnlineLearning,
        authorize: Callable[[Request, str], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.recent = recent
        self.learning = learning
        #: Raises unless the request's key made the trace (or is the admin's); None: auth off.
        self.authorize = authorize

    async def __call__(self, request: Request) -> Response:
        body = await read_json_body(request, _MAX_FEEDBACK_BYTES)
        given = parse_feedback(body, self.config.feedback.categories)
        if self.authorize is not None:
            await self.authorize(request, given.trace_id)
        trace = self.recent.get(given.trace_id)
        stored: dict[str, Any] | None = None
        earlier = 0
        if trace is None:
            # Not in memory: written long enough ago to have been evicted, or unknown.
            stored, earlier = await asyncio.to_thread(self._lookup, given.trace_id)
            if stored is None:
                raise TraceNotFound(
                    f"No trace with id {given.trace_id!r}: use the 'id' of a chat completion "
                    "answered by this gateway (traces older than store.retention_days are "
                    "deleted)",
                    param="trace_id",
                )
            trace = RecentTrace(
                router=stored["router"],
                model=stored["model"],
                status=stored["status"],
                taught=earlier > 0,
            )
        row = await asyncio.to_thread(
            lambda: self.store.insert_feedback(
                request_id=given.trace_id,
                score=given.score,
                kind=given.kind,
                label=given.label,
                source=given.source,
                comment=given.comment,
            )
        )
        learning = await self._learn(trace, given.score, stored)
        out = {
            "object": "feedback",
            "id": row["id"],
            "trace_id": given.trace_id,
            "created_at": row["created_at"].isoformat(),
            "score": given.score,
            "kind": given.kind,
            "label": given.label,
            "source": given.source,
            "comment": given.comment,
            "learning": learning,
        }
        return Response(orjson.dumps(out), media_type="application/json")

    def _lookup(self, trace_id: str) -> tuple[dict[str, Any] | None, int]:
        summary = self.store.trace_summary(trace_id)
        return summary, (self.store.feedback_count(trace_id) if summary is not None else 0)

    async def _learn(
        self, trace: RecentTrace, score: float, stored: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Teach the trace's online router, if it has one; say what happened."""
        name = trace.router
        if name is None or name not in self.learning.routers:
            return None  # not chosen by a router that learns
        out: dict[str, Any] = {"router": name, "model": trace.model, "updated": False}
        if trace.status >= 400 or trace.model is None:
            out["reason"] = "the request failed: there is no answer to learn from"
            return out
        if trace.taught:
            out["reason"] = "this trace already taught the router; only its first feedback does"
            return out
        router = self.learning.routers[name]
        request: RouteRequest | None = None
        if trace.context is None and is_contextual(router):
            body = stored.get("request_body") if stored is not None else None
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                out["reason"] = (
                    "the trace has left memory and its request text is not stored "
                    "(store.store_text is off), so the router's context cannot be rebuilt"
                )
                return out
            messages = [m for m in body["messages"] if isinstance(m, dict)]
            request = RouteRequest(prompt=flatten_messages(messages), messages=messages)
        trace.taught = True  # before the await: a concurrent feedback must not teach twice
        try:
            await self.learning.teach(name, trace.model, score, trace.context, request)
        except ValueError as e:  # e.g. a context the router's settings no longer fit
            trace.taught = False
            out["reason"] = f"the router could not learn from it: {e}"
            return out
        out["updated"] = True
        return out
