"""Constraints: who can serve a request, and why the others cannot."""

from __future__ import annotations

import pytest

from polyroute.errors import NoEligibleModel
from polyroute.routing.base import Candidate, Decision, RouteRequest
from polyroute.routing.constraints import assumed, eligible, exclusion, with_assumptions

SMALL = Candidate("small", context_window=1000, lacks=frozenset({"tools"}))
TOOLS = Candidate(
    "tools", capabilities=frozenset({"tools", "json_mode"}), lacks=frozenset({"vision"})
)
NO_TOOLS = Candidate("plain", lacks=frozenset({"tools", "json_mode", "vision"}))
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


def test_capabilities_known_to_be_missing_are_named() -> None:
    request = RouteRequest(prompt="hi", required_capabilities=frozenset({"tools", "vision"}))
    assert exclusion(request, TOOLS) == "lacks vision"
    assert exclusion(request, NO_TOOLS) == "lacks tools, vision"


def test_an_unknown_capability_is_assumed_not_missing() -> None:
    request = RouteRequest(prompt="hi", required_capabilities=frozenset({"tools", "json_mode"}))
    assert exclusion(request, ANY) is None
    assert assumed(request, ANY) == ["json_mode", "tools"]
    assert assumed(request, TOOLS) == []  # known to have both
    partly = Candidate("partly", capabilities=frozenset({"json_mode"}))
    assert exclusion(request, partly) is None and assumed(request, partly) == ["tools"]
    kept, excluded = eligible(request, [NO_TOOLS, ANY, TOOLS])
    assert [c.name for c in kept] == ["any", "tools"]
    assert excluded == {"plain": "lacks json_mode, tools"}


def test_the_decision_records_what_it_assumed() -> None:
    request = RouteRequest(prompt="hi", required_capabilities=frozenset({"tools"}))
    decision = Decision(model="any", router="r", reason="cheapest")
    noted = with_assumptions(decision, request, [ANY, TOOLS])
    assert noted.assumed == {"any": ["tools"]}
    assert noted.reason == "cheapest; assumed any supports tools (not known)"
    # Nothing assumed of the chosen model: the reason stays, the others are still recorded.
    other = with_assumptions(Decision(model="tools", router="r"), request, [ANY, TOOLS])
    assert other.assumed == {"any": ["tools"]} and other.reason == ""
    plain = RouteRequest(prompt="hi")
    assert with_assumptions(decision, plain, [ANY]) is decision


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
    # It names the config fields that would change the answer.
    assert "capabilities: [tools]" in message and "catalog_id" in message


def test_nothing_left_for_other_reasons_names_no_capability_fix() -> None:
    with pytest.raises(NoEligibleModel) as info:
        eligible(RouteRequest(prompt="x"), [DOWN])
    assert "catalog_id" not in info.value.message


def test_no_candidates_at_all_raises() -> None:
    with pytest.raises(NoEligibleModel, match="no model is configured"):
        eligible(RouteRequest(prompt="x"), [])
