"""apply_catalog fills what a config leaves out, and never overrides what it says."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.catalog import Catalog, Prices, apply_catalog
from polyroute.config import Config, ModelConfig
from polyroute.errors import ConfigError

PROVIDERS = {
    "openai": {"api": "openai", "base_url": "https://api.openai.com/v1"},
    "work-proxy": {"api": "openai", "base_url": "https://llm.internal.example/v1"},
    "fast": {"api": "openai", "base_url": "https://api.groq.com/openai/v1"},
    "local": {"api": "llama_cpp"},
}


def _config(*models: dict[str, Any]) -> Config:
    return Config.model_validate({"providers": PROVIDERS, "models": list(models)})


def _applied(hub: Catalog, **model: Any) -> ModelConfig:
    return apply_catalog(_config(model), hub).models[0]


def test_catalog_id_fills_prices_context_and_capabilities(hub: Catalog) -> None:
    m = _applied(hub, name="main", provider="openai", catalog_id="gpt-4o")
    assert (m.input_price, m.output_price, m.cached_input_price) == (2.5, 10.0, 1.25)
    assert m.context_window == 128000
    assert m.capabilities == ["json_mode", "tools", "vision"]


def test_explicit_values_are_never_overridden(hub: Catalog) -> None:
    m = _applied(
        hub,
        name="main",
        provider="openai",
        catalog_id="gpt-4o",
        input_price=1.0,
        context_window=4096,
        capabilities=["tools"],
    )
    assert m.input_price == 1.0
    assert m.context_window == 4096
    assert m.capabilities == ["tools"]
    assert m.output_price == 10.0  # not written: filled


def test_an_explicit_empty_capability_list_is_kept(hub: Catalog) -> None:
    m = _applied(hub, name="main", provider="openai", catalog_id="gpt-4o", capabilities=[])
    assert m.capabilities == []
    assert m.lacks == ["json_mode", "tools", "vision"]  # written: the whole list


def test_what_the_catalog_says_a_model_lacks_is_filled_and_the_rest_unknown(hub: Catalog) -> None:
    m = _applied(hub, name="l", provider="fast", catalog_id="llama-3.3-70b")
    assert (m.capabilities, m.lacks) == (["tools"], ["vision"])  # json_mode: unknown
    told = _applied(hub, name="l", provider="fast", catalog_id="llama-3.3-70b", lacks=["json_mode"])
    assert told.lacks == ["json_mode", "vision"]
    # A written capabilities list is the whole story: the catalog's lacks do not apply.
    own = _applied(hub, name="l", provider="fast", catalog_id="llama-3.3-70b",
                   capabilities=["tools", "vision"])  # fmt: skip
    assert (own.capabilities, own.lacks) == (["tools", "vision"], ["json_mode"])


def test_catalog_id_takes_the_endpoint_at_the_models_provider(hub: Catalog) -> None:
    m = _applied(hub, name="l", provider="fast", catalog_id="llama-3.3-70b")
    assert (m.input_price, m.output_price) == (0.59, 0.79)
    assert m.context_window == 32768  # the groq endpoint's limit, not the model's


def test_a_prefixed_catalog_id_pins_the_endpoint(hub: Catalog) -> None:
    m = _applied(hub, name="g", provider="work-proxy", catalog_id="azure/gpt-4o")
    assert (m.input_price, m.output_price, m.cached_input_price) == (2.75, 11.0, None)


def test_unknown_catalog_id_is_a_config_error_naming_model_and_fix(hub: Catalog) -> None:
    with pytest.raises(ConfigError) as info:
        _applied(hub, name="main", provider="openai", catalog_id="gpt-4")
    message = info.value.message
    assert "models[0] (main): catalog_id 'gpt-4'" in message
    assert "did you mean: gpt-4o" in message
    assert "Fix:" in message


def test_ambiguous_catalog_id_is_a_config_error_listing_candidates(hub: Catalog) -> None:
    with pytest.raises(ConfigError, match=r"llama-3\.1-70b, llama-3\.3-70b"):
        _applied(hub, name="main", provider="fast", catalog_id="llama-70b")


def test_without_catalog_id_the_upstream_name_is_matched(hub: Catalog) -> None:
    m = _applied(hub, name="smart", provider="openai", upstream_model="gpt-4o-2024-08-06")
    assert (m.input_price, m.output_price) == (2.5, 10.0)
    assert m.catalog_id is None


def test_an_unrecognised_host_gets_limits_but_no_guessed_price(hub: Catalog) -> None:
    m = _applied(hub, name="gpt-4o", provider="work-proxy")
    assert m.input_price is None and m.output_price is None
    assert m.context_window == 128000
    assert "tools" in m.capabilities


def test_a_host_that_does_not_list_the_model_gets_no_price(hub: Catalog) -> None:
    m = _applied(hub, name="gpt-4o", provider="fast")
    assert m.input_price is None


def test_names_the_catalog_does_not_know_are_left_alone(hub: Catalog) -> None:
    model = {"name": "in-house", "provider": "openai"}
    assert _applied(hub, **model) == ModelConfig(**model)
    ambiguous = {"name": "llama-70b", "provider": "fast"}
    assert _applied(hub, **ambiguous) == ModelConfig(**ambiguous)


def test_local_models_cost_zero_and_never_take_a_hosted_price(hub: Catalog) -> None:
    m = _applied(hub, name="llama-3.3-70b", provider="local", catalog_id="llama-3.3-70b")
    assert (m.input_price, m.output_price, m.cached_input_price) == (0.0, 0.0, 0.0)
    assert m.context_window == 131072  # the model's own facts still apply
    plain = _applied(hub, name="gpt-4o", provider="local")
    assert (plain.input_price, plain.output_price) == (0.0, 0.0)
    assert plain.capabilities is None  # a local model named like a hosted one is not it


def test_local_cost_is_configurable(hub: Catalog) -> None:
    config = _config(
        {"name": "a", "provider": "local"},
        {"name": "b", "provider": "local", "input_price": 0.5},
    )
    a, b = apply_catalog(config, hub, local_prices=Prices(input=0.01, output=0.02)).models
    assert (a.input_price, a.output_price) == (0.01, 0.02)
    assert (b.input_price, b.output_price) == (0.5, 0.02)


def test_the_config_itself_is_not_changed(hub: Catalog) -> None:
    config = _config({"name": "main", "provider": "openai", "catalog_id": "gpt-4o"})
    applied = apply_catalog(config, hub)
    assert config.models[0].input_price is None
    assert applied.models[0].input_price == 2.5
    assert applied.providers == config.providers


def test_a_native_provider_kind_names_its_catalog_provider() -> None:
    # Provider "claude" at a proxy URL, kind anthropic: Anthropic's own prices apply,
    # cache writes included.
    from polyroute.catalog import load_catalog

    cfg = Config.model_validate(
        {
            "providers": {"claude": {"api": "anthropic", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [{"name": "claude-sonnet-4-5", "provider": "claude"}],
        }
    )
    m = apply_catalog(cfg, load_catalog()).models[0]
    assert (m.input_price, m.output_price) == (3.0, 15.0)
    assert (m.cached_input_price, m.cache_write_price) == (0.3, 3.75)
