"""Cost accounting: hand-computed figures, cached tokens, and unknown prices that stay unknown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyroute.catalog import (
    LOCAL_PRICES,
    Catalog,
    Prices,
    cost_usd,
    prices_of,
    require_cost_usd,
    resolve,
)
from polyroute.config import ModelConfig
from polyroute.errors import UnknownPrice
from polyroute.providers.base import Usage

GPT_4O = Prices(input=2.5, output=10.0, cached_input=1.25)


def test_cost_without_cache() -> None:
    # 1,000 in at $2.50/M + 500 out at $10/M = 0.0025 + 0.005
    usage = Usage(prompt_tokens=1000, completion_tokens=500)
    assert cost_usd(GPT_4O, usage) == pytest.approx(0.0075)


def test_cached_tokens_bill_at_the_cached_price() -> None:
    # prompt_tokens includes the 800 cached: 200 x 2.50 + 800 x 1.25 + 100 x 10, per million
    usage = Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=800)
    assert cost_usd(GPT_4O, usage) == pytest.approx((500 + 1000 + 1000) / 1e6)


def test_cached_tokens_bill_at_the_input_price_when_no_cached_price() -> None:
    prices = Prices(input=3.0, output=15.0)
    usage = Usage(prompt_tokens=2000, completion_tokens=1000, cached_tokens=1500)
    assert cost_usd(prices, usage) == pytest.approx((2000 * 3.0 + 1000 * 15.0) / 1e6)


def test_cached_count_larger_than_prompt_is_clamped() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=0, cached_tokens=1000)
    assert cost_usd(GPT_4O, usage) == pytest.approx(100 * 1.25 / 1e6)


CLAUDE = Prices(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)


def test_cache_writes_bill_at_the_cache_write_price() -> None:
    # Anthropic's shape in OpenAI's terms: 1,000 prompt = 100 fresh + 600 read + 300 written.
    usage = Usage(
        prompt_tokens=1000, completion_tokens=10, cached_tokens=600, cache_write_tokens=300
    )
    expected = (100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 10 * 15.0) / 1e6
    assert cost_usd(CLAUDE, usage) == pytest.approx(expected)
    # Without a cache-write price (providers with no surcharge) writes bill as input.
    plain = Prices(input=3.0, output=15.0, cached_input=0.3)
    assert cost_usd(plain, usage) == pytest.approx((400 * 3.0 + 600 * 0.3 + 10 * 15.0) / 1e6)


def test_cache_writes_never_exceed_the_prompt() -> None:
    usage = Usage(prompt_tokens=100, cached_tokens=80, cache_write_tokens=500)
    assert cost_usd(CLAUDE, usage) == pytest.approx((80 * 0.3 + 20 * 3.75) / 1e6)


def test_the_bundled_catalog_has_anthropics_cache_write_prices() -> None:
    from polyroute.catalog import load_catalog

    found = resolve(load_catalog(), "claude-sonnet-4-5", provider="anthropic")
    assert found.endpoint is not None
    assert found.endpoint.prices.cache_write == pytest.approx(3.75)  # 1.25 x input


@pytest.mark.parametrize(
    "prices", [Prices(), Prices(input=1.0), Prices(output=1.0), Prices(cached_input=0.1)]
)
def test_unknown_price_is_none_never_zero(prices: Prices) -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=10)
    assert cost_usd(prices, usage) is None
    assert cost_usd(prices, Usage()) is None  # not even for zero tokens


def test_require_cost_raises_unknown_price_naming_the_model() -> None:
    with pytest.raises(UnknownPrice, match=r"output price of 'x' is not known"):
        require_cost_usd(Prices(input=1.0), Usage(prompt_tokens=1), model="x")
    assert require_cost_usd(GPT_4O, Usage(prompt_tokens=1_000_000), model="gpt-4o") == 2.5


def test_an_endpoint_without_prices_costs_unknown_not_a_neighbours_price(hub: Catalog) -> None:
    found = resolve(hub, "mystery-1")
    assert found.endpoint is not None
    assert cost_usd(found.endpoint.prices, Usage(prompt_tokens=5, completion_tokens=5)) is None


def test_local_models_cost_zero_money_by_default() -> None:
    usage = Usage(prompt_tokens=10_000, completion_tokens=5_000, cached_tokens=2_000)
    assert cost_usd(LOCAL_PRICES, usage) == 0.0


def test_local_cost_is_configurable() -> None:
    local = ModelConfig(name="m", provider="local", input_price=0.01, output_price=0.02)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert cost_usd(prices_of(local), usage) == pytest.approx(0.03)


def test_prices_of_a_config_keeps_unknown_as_none() -> None:
    assert prices_of(ModelConfig(name="m", provider="p")) == Prices()


counts = st.integers(min_value=0, max_value=10_000_000)
price = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(prompt=counts, completion=counts, cached=counts, p_in=price, p_out=price, p_cache=price)
def test_cost_matches_the_formula(
    prompt: int, completion: int, cached: int, p_in: float, p_out: float, p_cache: float
) -> None:
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)
    usd = cost_usd(Prices(input=p_in, output=p_out, cached_input=p_cache), usage)
    c = min(cached, prompt)
    expected = ((prompt - c) * p_in + c * p_cache + completion * p_out) / 1e6
    assert usd is not None and usd >= 0
    assert usd == pytest.approx(expected)
