"""The bench prices an answer exactly as the gateway prices a request: model hub, cached tokens."""

from __future__ import annotations

import pytest

from polyroute.bench.costs import answer_cost_usd
from polyroute.catalog import apply_catalog, load_catalog
from polyroute.config import Config, ModelConfig


def _hub_model(**fields: object) -> ModelConfig:
    config = Config.model_validate(
        {
            "providers": {"openai": {"api": "openai", "base_url": "https://api.openai.com/v1"}},
            "models": [{"name": "main", "provider": "openai", **fields}],
        }
    )
    return apply_catalog(config, load_catalog()).models[0]


def test_prices_come_from_the_hub_with_cached_input_at_its_own_price() -> None:
    m = _hub_model(catalog_id="gpt-4o")  # 2.5 / 10 / cached 1.25 USD per 1M tokens
    # 1000 prompt tokens of which 400 cached, 100 completion tokens, by hand:
    # 600 × 2.5 + 400 × 1.25 + 100 × 10 = 3000 µUSD
    assert answer_cost_usd(m, 1000, 100, cached_tokens=400) == pytest.approx(3000e-6)
    assert answer_cost_usd(m, 1000, 100) == pytest.approx(3500e-6)


def test_unknown_price_or_usage_is_none_never_zero() -> None:
    unpriced = _hub_model(upstream_model="a-model-nobody-prices")
    assert unpriced.input_price is None
    assert answer_cost_usd(unpriced, 10, 10) is None
    assert answer_cost_usd(_hub_model(catalog_id="gpt-4o"), None, 10) is None
    assert answer_cost_usd(None, 10, 10) is None
