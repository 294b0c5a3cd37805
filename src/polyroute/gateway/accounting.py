"""What a request cost, from its model's prices and the usage the upstream reported."""

from __future__ import annotations

from polyroute.config import ModelConfig
from polyroute.providers.base import Usage


def price(model: ModelConfig, usage: Usage) -> tuple[float | None, str]:
    """Return ``(usd, status)``; status is ``known``, ``free`` or ``unknown`` (then usd is None).

    Cached prompt tokens are billed at the cached price when the model has one, else at the
    input price. A model without an input or output price is *unknown*, never $0.
    """
    if model.input_price is None or model.output_price is None:
        return None, "unknown"
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_price = (
        model.cached_input_price if model.cached_input_price is not None else model.input_price
    )
    usd = (
        (usage.prompt_tokens - cached) * model.input_price
        + cached * cached_price
        + usage.completion_tokens * model.output_price
    ) / 1_000_000
    if model.input_price == 0 and model.output_price == 0:
        return 0.0, "free"
    return usd, "known"
