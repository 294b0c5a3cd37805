"""The non-learned routers: random and smooth weighted round robin."""

from __future__ import annotations

from collections import Counter

import pytest

from polyroute.errors import ConfigError, NoEligibleModel
from polyroute.routing.base import Candidate, RouteRequest
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.random import RandomRouter
from polyroute.routing.routers.wrr import WeightedRoundRobinRouter

REQ = RouteRequest(prompt="hello")
ABC = [Candidate("a"), Candidate("b"), Candidate("c")]


def test_builtins_are_registered() -> None:
    assert {"random", "wrr", "knn", "mlp"} <= set(ROUTERS.names())
    assert ROUTERS.get("random") is RandomRouter


def test_random_is_repeatable_with_a_seed() -> None:
    r1, r2 = RandomRouter(seed=7), RandomRouter(seed=7)
    first = [r1.route(REQ, ABC).model for _ in range(20)]
    assert first == [r2.route(REQ, ABC).model for _ in range(20)]
    assert set(first) <= {"a", "b", "c"}


def test_random_is_roughly_uniform_and_falls_back_to_the_others() -> None:
    router = RandomRouter(seed=1)
    decisions = [router.route(REQ, ABC) for _ in range(3000)]
    counts = Counter(d.model for d in decisions)
    assert set(counts) == {"a", "b", "c"}
    assert all(900 < n < 1100 for n in counts.values())
    assert all(sorted((d.model, *d.fallbacks)) == ["a", "b", "c"] for d in decisions[:10])


def test_random_from_config_rejects_unknown_options() -> None:
    assert RandomRouter.from_config("r", {"seed": 3}).seed == 3
    with pytest.raises(ConfigError, match=r"routers\.r\.sead: unknown field"):
        RandomRouter.from_config("r", {"sead": 3})
    with pytest.raises(ConfigError, match="integer"):
        RandomRouter.from_config("r", {"seed": "x"})


def test_wrr_follows_nginx_smooth_sequence() -> None:
    router = WeightedRoundRobinRouter(weights={"a": 5, "b": 1, "c": 1})
    picks = [router.route(REQ, ABC).model for _ in range(7)]
    assert picks == ["a", "a", "b", "a", "c", "a", "a"]


def test_wrr_shares_match_weights_over_many_requests() -> None:
    router = WeightedRoundRobinRouter(weights={"a": 3, "b": 2, "c": 0.5})
    counts = Counter(router.route(REQ, ABC).model for _ in range(1100))
    assert counts == {"a": 600, "b": 400, "c": 100}


def test_wrr_skips_excluded_models_and_ignores_unweighted_ones() -> None:
    router = WeightedRoundRobinRouter(weights={"a": 1, "b": 1})
    only_b = [Candidate("b"), Candidate("z")]
    assert {router.route(REQ, only_b).model for _ in range(5)} == {"b"}
    with pytest.raises(NoEligibleModel, match="a, b"):
        router.route(REQ, [Candidate("z")])


def test_wrr_validates_weights() -> None:
    with pytest.raises(ValueError, match="> 0"):
        WeightedRoundRobinRouter(weights={"a": 0})
    with pytest.raises(ConfigError, match="weights"):
        WeightedRoundRobinRouter.from_config("w", {"weights": ["a"]})
    with pytest.raises(
        ConfigError, match=r"routers\.w\.weights\.a: Input should be a valid number"
    ):
        WeightedRoundRobinRouter.from_config("w", {"weights": {"a": "heavy"}})
    with pytest.raises(ConfigError, match=r"routers\.w: weight of 'a' must be > 0"):
        WeightedRoundRobinRouter.from_config("w", {"weights": {"a": -1}})
    router = WeightedRoundRobinRouter.from_config("w", {"weights": {"a": 2}})
    assert router.models == ["a"]
    assert "weight 2" in router.route(REQ, ABC).reason
