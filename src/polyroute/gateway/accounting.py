"""What a request cost: the model hub's pricing applied to the usage the upstream reported."""

from __future__ import annotations

from polyroute.catalog.pricing import cost_usd, prices_of
from polyroute.config import ModelConfig
from polyroute.providers.base import Usage


def price(model: ModelConfig, usage: Usage) -> tuple[float | None, str]:
    """Return ``(usd, status)``: status ``known``, ``free`` (zero prices, e.g. a local model)
    or ``unknown`` (then usd is None: an unknown price is never recorded as $0)."""
    usd = cost_usd(prices_of(model), usage)
    if usd is None:
        return None, "unknown"
    if model.input_price == 0 and model.output_price == 0:
        return 0.0, "free"
    return usd, "known"
