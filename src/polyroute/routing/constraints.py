"""Hard constraints, applied before any router scores a model: who *can* serve this request.

A candidate is excluded when it is marked unhealthy, is known to lack a capability the
request needs (``tools``, ``json_mode``, ``vision``), or its context window cannot hold the
prompt plus the expected answer. A capability nobody wrote down is unknown, not missing:
the model stays eligible, as the same request sent to it by name would be tried, and
:func:`with_assumptions` records in the decision what was assumed. Routers then choose
among the rest; when nothing is left, :func:`eligible` raises
:class:`~polyroute.errors.NoEligibleModel` saying why each model was excluded and which
config field would change that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

from polyroute.errors import NoEligibleModel
from polyroute.routing.base import Candidate, Decision, RouteRequest


def exclusion(request: RouteRequest, candidate: Candidate) -> str | None:
    """Why ``candidate`` cannot serve ``request``, or None when it can."""
    if not candidate.healthy:
        return "unhealthy (recent upstream failures)"
    missing = sorted(request.required_capabilities & candidate.lacks)
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


def assumed(request: RouteRequest, candidate: Candidate) -> list[str]:
    """The capabilities ``request`` needs that ``candidate`` is neither known to have nor
    known to lack, sorted."""
    return sorted(request.required_capabilities - candidate.capabilities - candidate.lacks)


def with_assumptions(
    decision: Decision, request: RouteRequest, candidates: Sequence[Candidate]
) -> Decision:
    """``decision`` with what it assumed of each candidate, and of the chosen model in its
    reason; unchanged when nothing was assumed."""
    found = {c.name: caps for c in candidates if (caps := assumed(request, c))}
    if not found:
        return decision
    reason = decision.reason
    chosen = found.get(decision.model)
    if chosen:
        note = f"assumed {decision.model} supports {', '.join(chosen)} (not known)"
        reason = f"{reason}; {note}" if reason else note
    return dataclasses.replace(decision, assumed=found, reason=reason)


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
    lacking = sorted(set().union(*(request.required_capabilities & c.lacks for c in candidates)))
    fix = ""
    if lacking:
        fix = (
            f". If a model does support {', '.join(lacking)}, say so under it in the config "
            f"(capabilities: [{', '.join(lacking)}]), or set its catalog_id to its catalog entry"
        )
    raise NoEligibleModel(f"no model can serve this request ({why}){fix}")
