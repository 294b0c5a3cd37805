"""Constraints: who can serve a request, and why the others cannot."""

from __future__ import annotations

import pytest

from polyroute.errors import NoEligibleModel
from polyroute.routing.base import Candidate, RouteRequest
from polyroute.routing.constraints import eligible, exclusion

SMALL = Candidate("small", context_window=1000)
TOOLS = Candidate("tools", capabilities=frozenset({"tools", "json_mode"}))
DOWN = Candidate("down", healthy=False)
ANY = Candidate("any")


def test_a_plain_request_keeps_every_healthy_model_in_order() -> None:
    result = eligible(RouteRequest(prompt="hi", input_tokens=10), [SMALL, TOOLS, ANY])
    assert [c.name for c in result.candidates] == ["small", "tools", "any"]
    assert result.excluded == {}


def test_unhealthy_models_are_excluded() -> None:
    kept, excluded = eligible(RouteRequest(prompt="hi"), [DOWN, ANY])
    assert [c.name for c in kept] == ["any"]
    assert "unhealthy" in excluded["down"]


def test_missing_capabilities_are_named() -> None:
    request = RouteRequest(prompt="hi", required_capabilities=frozenset({"tools", "vision"}))
    assert exclusion(request, TOOLS) == "lacks vision"
    assert exclusion(request, ANY) == "lacks tools, vision"


def test_context_window_counts_prompt_and_answer() -> None:
    fits = RouteRequest(prompt="x", input_tokens=744, output_tokens=256)
    assert exclusion(fits, SMALL) is None  # exactly 1000
    too_long = RouteRequest(prompt="x", input_tokens=745, output_tokens=256)
    reason = exclusion(too_long, SMALL)
    assert reason is not None and "1000" in reason and "745" in reason
    assert exclusion(too_long, ANY) is None  # unknown window: not excluded


def test_nothing_left_raises_with_every_reason() -> None:
    request = RouteRequest(
        prompt="x", input_tokens=5000, required_capabilities=frozenset({"tools"})
    )
    with pytest.raises(NoEligibleModel) as info:
        eligible(request, [SMALL, DOWN])
    message = info.value.message
    assert "small: lacks tools" in message
    assert "down: unhealthy" in message


def test_no_candidates_at_all_raises() -> None:
    with pytest.raises(NoEligibleModel, match="no model is configured"):
        eligible(RouteRequest(prompt="x"), [])
