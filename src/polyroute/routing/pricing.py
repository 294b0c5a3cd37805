"""A request's cost from a model's prices: the one formula routers and datasets share.

cost = input_tokens × input_price + output_tokens × output_price   (prices in USD per 1M tokens)

A model with no price is :class:`polyroute.errors.UnknownPrice` to whoever needs one, never $0.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Assumed answer length when neither the request nor the data says (a short paragraph).
DEFAULT_OUTPUT_TOKENS = 256

#: {model: (USD per 1M input tokens, USD per 1M output tokens)}
PriceTable = Mapping[str, tuple[float, float]]


def prompt_cost(input_tokens: int, price: tuple[float, float], output_tokens: int) -> float:
    """USD for one call: tokens × (USD per 1M tokens) / 1M."""
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6
