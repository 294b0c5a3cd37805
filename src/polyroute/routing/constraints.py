"""Hard constraints, applied before any router scores a model: who *can* serve this request.

A candidate is excluded when it is marked unhealthy, lacks a capability the request needs
(``tools``, ``json_mode``, ``vision``), or its context window cannot hold the prompt plus the
expected answer. Routers then choose among the rest; when nothing is left,
:func:`eligible` raises :class:`~polyroute.errors.NoEligibleModel` saying why each
model was excluded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from polyroute.errors import NoEligibleModel
from polyroute.routing.base import Candidate, RouteRequest


def exclusion(request: RouteRequest, candidate: Candidate) -> str | None:
    """Why ``candidate`` cannot serve ``request``, or None when it can."""
    if not candidate.healthy:
        return "unhealthy (recent upstream failures)"
    missing = sorted(request.required_capabilities - candidate.capabilities)
    if missing:
        return f"lacks {', '.join(missing)}"
    window = candidate.context_window
    needed = request.input_tokens + request.output_tokens
    if window is not None and needed > window:
        return (
            f"context window {window} tokens < {request.input_tokens} prompt + "
            f"{request.output_tokens} answer tokens"
        )
    return None


class Eligibility(NamedTuple):
    """The candidates left (in their order) and why each other one was excluded."""

    candidates: list[Candidate]
    excluded: dict[str, str]


def eligible(request: RouteRequest, candidates: Sequence[Candidate]) -> Eligibility:
    """The candidates that can serve ``request``, and a reason per excluded one.

    Raises NoEligibleModel, listing every exclusion, when none is left.
    """
    kept: list[Candidate] = []
    excluded: dict[str, str] = {}
    for candidate in candidates:
        reason = exclusion(request, candidate)
        if reason is None:
            kept.append(candidate)
        else:
            excluded[candidate.name] = reason
    if kept:
        return Eligibility(kept, excluded)
    if not excluded:
        raise NoEligibleModel("no model is configured to serve this request")
    why = "; ".join(f"{name}: {reason}" for name, reason in excluded.items())
    raise NoEligibleModel(f"no model can serve this request ({why})")
