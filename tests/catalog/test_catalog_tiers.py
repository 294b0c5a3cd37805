"""Tiered prices: long prompts bill at their tier, from the importer to the budget."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from tests.auth.support import ADMIN, create_key
from tests.conftest import serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.catalog import Prices, apply_catalog, cost_usd, load_catalog, prices_of, resolve
from polyroute.catalog.litellm_import import convert
from polyroute.catalog.pricing import priced_at
from polyroute.catalog.schema import PriceTier
from polyroute.config import Config, ModelConfig
from polyroute.providers.base import Usage


def test_the_bundled_gemini_2_5_pro_bills_long_prompts_at_its_tier() -> None:
    """LiteLLM 1.109.1: $1.25/$10 per M, and $2.50/$15 (cache reads $0.25) above 200k."""
    found = resolve(load_catalog(), "gemini-2.5-pro", provider="gemini")
    assert found.endpoint is not None
    prices = found.endpoint.prices
    assert prices.tiers == (
        PriceTier(above_input_tokens=200_000, input=2.5, output=15.0, cached_input=0.25),
    )
    short = Usage(prompt_tokens=200_000, completion_tokens=1000, cached_tokens=100_000)
    long = Usage(prompt_tokens=200_001, completion_tokens=1000, cached_tokens=100_000)
    assert cost_usd(prices, short) == pytest.approx(
        (100_000 * 1.25 + 100_000 * 0.125 + 1000 * 10.0) / 1e6
    )
    # One token more and the whole request is at the tier's prices, not just the excess.
    assert cost_usd(prices, long) == pytest.approx(
        (100_001 * 2.5 + 100_000 * 0.25 + 1000 * 15.0) / 1e6
    )


def test_a_tier_inherits_what_it_leaves_out_and_tiers_stack() -> None:
    prices = Prices(
        input=1.0,
        output=2.0,
        cached_input=0.1,
        tiers=(
            PriceTier(above_input_tokens=100, input=3.0),
            PriceTier(above_input_tokens=1000, output=9.0),
        ),
    )
    assert prices.at(100) is prices
    assert prices.at(101) == Prices(input=3.0, output=2.0, cached_input=0.1)
    assert prices.at(1001) == Prices(input=3.0, output=9.0, cached_input=0.1)
    with pytest.raises(ValueError, match="ascending"):
        Prices(input=1, output=1, tiers=(prices.tiers[1], prices.tiers[0]))


def test_the_importer_reads_the_standard_tiers_and_ignores_service_tiers() -> None:
    raw: dict[str, Any] = {
        "gpt-long": {
            "litellm_provider": "openai",
            "mode": "chat",
            "max_input_tokens": 400_000,
            "input_cost_per_token": 1.25e-06,
            "output_cost_per_token": 1e-05,
            "input_cost_per_token_above_272k_tokens": 2.5e-06,
            "output_cost_per_token_above_272k_tokens": 1.5e-05,
            "cache_read_input_token_cost_above_272k_tokens": 2.5e-07,
            "cache_creation_input_token_cost_above_272k_tokens": 3e-06,
            "input_cost_per_token_above_272k_tokens_priority": 5e-06,
            "cache_creation_input_token_cost_above_1hr": 6e-06,
        },
        "gpt-broken": {
            "litellm_provider": "openai",
            "mode": "chat",
            "input_cost_per_token": 1e-06,
            "output_cost_per_token_above_200k_tokens": "a lot",
        },
    }
    report = convert(raw, version="test", today=dt.date(2026, 12, 1))
    (model,) = report.catalog.models
    assert model.endpoints[0].prices.tiers == (
        PriceTier(
            above_input_tokens=272_000, input=2.5, output=15.0, cached_input=0.25, cache_write=3.0
        ),
    )
    assert [key for key, _ in report.rejected] == ["gpt-broken"]  # never a guessed price


def _gemini_config(**model: Any) -> Config:
    return Config.model_validate(
        {
            "providers": {"g": {"api": "gemini", "base_url": "http://127.0.0.1:9/v1beta"}},
            "models": [
                {"name": "pro", "provider": "g", "upstream_model": "gemini-2.5-pro", **model}
            ],
        }
    )


def test_the_catalog_fills_a_models_tiers_unless_it_writes_its_own_prices() -> None:
    filled = apply_catalog(_gemini_config(), load_catalog()).models[0]
    assert [t.above_input_tokens for t in filled.price_tiers] == [200_000]
    assert cost_usd(prices_of(filled), Usage(prompt_tokens=300_000)) == pytest.approx(0.75)
    own = apply_catalog(_gemini_config(input_price=1.0, output_price=8.0), load_catalog())
    assert own.models[0].price_tiers == []  # its own flat prices are never mixed with tiers


def test_priced_at_flattens_a_models_prices_for_a_prompt_length() -> None:
    model = ModelConfig(
        name="m",
        provider="p",
        input_price=1.0,
        output_price=2.0,
        price_tiers=[PriceTier(above_input_tokens=10, input=5.0, output=6.0)],
    )
    assert priced_at(model, 10) is model
    long = priced_at(model, 11)
    assert (long.input_price, long.output_price, long.price_tiers) == (5.0, 6.0, [])


@pytest.fixture
def root(
    echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    from polyroute.gateway import create_app

    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    priced = {"provider": "up", "upstream_model": "echo", "input_price": 1.0, "output_price": 1.0}
    config = Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "auth": {"cache_ttl_s": 0.2},
            "providers": {"up": {"api": "openai", "base_url": echo_upstream.base_url}},
            "models": [
                {"name": "flat", **priced},
                {
                    "name": "tiered",
                    **priced,
                    "price_tiers": [{"above_input_tokens": 200_000, "input": 10.0, "output": 10.0}],
                },
            ],
        }
    )
    with serving(create_app(config)) as base_url:
        yield base_url.removesuffix("/v1")


@pytest.mark.e2e
def test_a_budget_reserves_a_long_prompt_at_its_tier(root: str) -> None:
    key = create_key(root, budget_usd=1)
    client = openai.OpenAI(base_url=f"{root}/v1", api_key=key["secret"], max_retries=0, timeout=30)
    # 250k bytes: at most 250k tokens, $0.25 at the base price but $2.50 at the tier's.
    prompt = [{"role": "user", "content": "word " * 50_000}]
    answer = client.chat.completions.create(model="flat", messages=prompt, max_tokens=1)
    assert answer.choices[0].message.content
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="tiered", messages=prompt, max_tokens=1)
    assert refused.value.response.json()["error"]["code"] == "budget_exceeded"
