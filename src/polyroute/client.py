"""Client helpers for the ``openai`` SDK pointed at polyroute: attaching feedback to a trace.

A chat completion's ``id`` is its trace id. Feedback goes through the SDK's own client, so
it uses the same base URL, API key, retries and error types as the completion did::

    from openai import OpenAI
    from polyroute.client import feedback

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    r = client.chat.completions.create(model="auto", messages=[...])
    feedback(client, r.id, True)            # or 0.8, or "thumbs_up"

Errors are the SDK's: ``openai.NotFoundError`` for an unknown trace id,
``openai.BadRequestError`` for a bad score.
"""

from __future__ import annotations

from typing import Any, Protocol


class _SyncClient(Protocol):
    def post(self, path: str, *, cast_to: Any, body: Any = ...) -> Any: ...


class _AsyncClient(Protocol):
    async def post(self, path: str, *, cast_to: Any, body: Any = ...) -> Any: ...


def _body(
    trace_id: str, score: float | bool | str, source: str | None, comment: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"trace_id": trace_id, "score": score}
    if source is not None:
        body["source"] = source
    if comment is not None:
        body["comment"] = comment
    return body


def feedback(
    client: _SyncClient,
    trace_id: str,
    score: float | bool | str,
    *,
    source: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Send feedback for the completion ``trace_id`` with an ``openai.OpenAI`` client.

    ``score`` is a number in [0, 1], True/False, or a category name (``good``, ``bad``,
    ``thumbs_up``, ... as configured). Returns the stored feedback, including whether the
    router that chose the model learned from it (``learning``).
    """
    out = client.post("/feedback", cast_to=object, body=_body(trace_id, score, source, comment))
    return dict(out)


async def afeedback(
    client: _AsyncClient,
    trace_id: str,
    score: float | bool | str,
    *,
    source: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """:func:`feedback` for an ``openai.AsyncOpenAI`` client."""
    out = await client.post(
        "/feedback", cast_to=object, body=_body(trace_id, score, source, comment)
    )
    return dict(out)


__all__ = ["afeedback", "feedback"]
