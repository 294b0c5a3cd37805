"""Routers over the user's own model names: mapping, matching, coverage, zero-config ``auto``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import serving
from tests.gateway.test_gateway_learned_router import train_math_poem_router
from tests.gateway.test_gateway_routing import routed_config
from tests.support.echo_upstream import EchoUpstream

from polyroute.config import Config
from polyroute.errors import ConfigError
from polyroute.gateway import create_app
from polyroute.gateway.bindings import bind, match_names, price_prior
from polyroute.gateway.routing import build_router_hub
from polyroute.routing.online.thompson import ThompsonRouter
from polyroute.routing.persist import load_router

USER = [{"role": "user", "content": "route me"}]


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kNN router trained on names nobody serves: math-whiz is good at math, bard at poems."""
    out = tmp_path_factory.mktemp("routers") / "knn"
    return train_math_poem_router(out, ("vendor/Math-Whiz-7B", "bard"))


def _config(models: list[dict[str, Any]], routers: dict[str, Any] | None = None) -> Config:
    return Config.model_validate(
        {
            "store": {"database_url": "sqlite://"},
            "providers": {"up": {"api": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [{"provider": "up", **m} for m in models],
            "routers": routers or {},
        }
    )


def test_trained_names_match_served_ones_that_plainly_are_them() -> None:
    cfg = _config(
        [
            {"name": "whiz", "catalog_id": "math-whiz-7b"},
            {"name": "poet", "aliases": ["Bard"]},
            {"name": "other"},
        ]
    )
    found = match_names(["vendor/Math-Whiz-7B", "bard", "nobody"], cfg.models)
    assert found == {"vendor/Math-Whiz-7B": "whiz", "bard": "poet"}
    # Two served models that both look like one trained name: no guess.
    twins = _config([{"name": "bard"}, {"name": "x", "upstream_model": "BARD"}])
    assert match_names(["bard"], twins.models) == {}


def test_an_explicit_mapping_serves_trained_names_as_the_users(trained_dir: Path) -> None:
    cfg = _config([{"name": "small"}, {"name": "large"}])
    router = load_router(trained_dir, name="smart")
    cover = bind(router, {"vendor/Math-Whiz-7B": "large", "bard": "small"}, cfg)
    assert router.models == ["large", "small"]
    assert cover.scored == ["small", "large"] and cover.unscored == []
    assert cover.renamed == {"vendor/Math-Whiz-7B": "large", "bard": "small"}
    assert cover.warning() is None


def test_a_router_that_can_score_no_served_model_is_a_config_error(trained_dir: Path) -> None:
    cfg = _config(
        [{"name": "small"}, {"name": "large"}],
        {"smart": {"kind": "knn", "path": str(trained_dir)}},
    )
    with pytest.raises(ConfigError) as e:
        build_router_hub(cfg)
    assert "none of them is served" in e.value.message
    assert "routers.smart.models" in e.value.message  # the fix, by name


def test_partial_coverage_is_a_warning_naming_the_models(trained_dir: Path) -> None:
    cfg = _config(
        [{"name": "small"}, {"name": "large"}],
        {"smart": {"kind": "knn", "path": str(trained_dir), "models": {"bard": "small"}}},
    )
    hub = build_router_hub(cfg)
    assert hub is not None
    cover = hub.coverage["smart"]
    assert cover.scored == ["small"] and cover.unscored == ["large"]
    assert "large" in (cover.warning() or "")
    assert [c.name for c in hub.candidates(hub.routers["smart"])] == ["small"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"bard": "nowhere"}, "routers.smart.models.bard: 'nowhere' is not a served model"),
        ({"ghost": "small"}, "was not trained on ghost"),
        (["small", "nope"], "routers.smart.models[1]: 'nope' is not a served model"),
        ("small", "routers.smart.models must map trained names"),
    ],
)
def test_bad_models_options_say_what_is_wrong(trained_dir: Path, option: Any, message: str) -> None:
    cfg = _config(
        [{"name": "small"}, {"name": "large"}],
        {"smart": {"kind": "knn", "path": str(trained_dir), "models": option}},
    )
    with pytest.raises(ConfigError) as e:
        build_router_hub(cfg)
    assert message in e.value.message


def test_a_list_restricts_a_bandit_to_some_models() -> None:
    cfg = _config(
        [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        {"two": {"kind": "thompson", "models": ["a", "c"]}},
    )
    hub = build_router_hub(cfg)
    assert hub is not None
    assert [c.name for c in hub.candidates(hub.routers["two"])] == ["a", "c"]


def test_zero_config_auto_is_a_bandit_that_starts_from_prices() -> None:
    cfg = _config(
        [
            {"name": "cheap", "input_price": 0.1, "output_price": 0.2},
            {"name": "dear", "input_price": 5.0, "output_price": 15.0},
            {"name": "unpriced"},
        ]
    )
    assert price_prior(cfg.models) == pytest.approx({"cheap": 0.35, "dear": 0.65, "unpriced": 0.5})
    hub = build_router_hub(cfg)
    assert hub is not None and hub.default == "auto" and hub.handles("auto")
    bandit = hub.routers["auto"]
    assert isinstance(bandit, ThompsonRouter)
    assert bandit.prior["dear"][0] > bandit.prior["cheap"][0]


def test_no_models_no_router() -> None:
    assert build_router_hub(_config([])) is None


def test_thompson_prior_moves_the_estimate_and_feedback_outweighs_it() -> None:
    router = ThompsonRouter("t", seed=0)
    router.set_prior("a", 0.8)
    from polyroute.routing.base import Candidate, RouteRequest

    cands = [Candidate("a"), Candidate("b")]
    picks = [router.route(RouteRequest("x"), cands).model for _ in range(200)]
    assert picks.count("a") > picks.count("b")
    for _ in range(30):
        router.update("a", 0.0)
        router.update("b", 1.0)
    picks = [router.route(RouteRequest("x"), cands).model for _ in range(200)]
    assert picks.count("b") > 150
    with pytest.raises(ValueError):
        router.set_prior("a", 1.5)


@pytest.mark.e2e
def test_served_names_route_end_to_end(
    echo_upstream: EchoUpstream, db_url: str, trained_dir: Path
) -> None:
    """A router trained on other names serves echo/renamed through a mapping."""
    cfg = routed_config(
        echo_upstream.base_url, db_url,
        {"smart": {"kind": "knn", "path": str(trained_dir), "models": {"vendor/Math-Whiz-7B": "echo", "bard": "renamed"}}},
        None, models=("echo", "renamed"),
    )  # fmt: skip
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "What is 12 times 12?"}]
        )
        assert raw.parse().model == "echo"
        assert set(json.loads(raw.headers["x-polyroute-scores"])) == {"echo", "renamed"}
        poem = client.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "Write a poem about rivers."}]
        )
        assert poem.model == "renamed"
        health = httpx.get(base_url.removesuffix("/v1") + "/health").json()
        assert health["routers"]["smart"]["scored"] == ["echo", "renamed"]
        assert health["default_router"] == "smart"


@pytest.mark.e2e
def test_zero_config_auto_answers_end_to_end(echo_upstream: EchoUpstream, db_url: str) -> None:
    cfg = routed_config(echo_upstream.base_url, db_url, {}, None, models=("echo", "renamed"))
    with serving(create_app(cfg)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        ids = [m.id for m in client.models.list().data]
        assert ids.count("auto") == 1
        for stream in (False, True):
            if stream:
                chunks = list(
                    client.chat.completions.create(model="auto", messages=USER, stream=True)
                )  # type: ignore[arg-type]
                assert chunks and chunks[0].model in {"echo", "renamed"}
            else:
                raw = client.chat.completions.with_raw_response.create(model="auto", messages=USER)  # type: ignore[arg-type]
                assert raw.headers["x-polyroute-router"] == "auto"
                assert raw.parse().model in {"echo", "renamed"}


def test_the_startup_summary_names_models_routers_store_and_pages(trained_dir: Path) -> None:
    cfg = _config(
        [{"name": "small"}, {"name": "large"}],
        {"smart": {"kind": "knn", "path": str(trained_dir), "models": {"bard": "small"}}},
    )
    raw = cfg.model_dump()
    raw["store"]["database_url"] = "postgresql+psycopg://user:s3cret@db/polyroute"
    gateway = create_app(Config.model_validate(raw)).state.gateway
    text = "\n".join(gateway.describe("http://127.0.0.1:8000"))
    assert "model small:" in text and "model large:" in text
    assert "router smart (knn): small; cannot score: large; serves bard as small" in text
    assert "model=\"auto\" uses router 'smart'" in text
    assert "postgresql+psycopg://user:***@db/polyroute" in text and "s3cret" not in text
    assert "http://127.0.0.1:8000/ui" in text
