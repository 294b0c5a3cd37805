"""What one answer cost, priced exactly as the gateway prices a request.

Prices come from the model's config, which :func:`polyroute.catalog.apply_catalog` fills
from the model hub where the config leaves them out; the arithmetic (cached input tokens
included) is :func:`polyroute.catalog.pricing.cost_usd`, the one the gateway's recorder uses.
"""

from __future__ import annotations

from polyroute.catalog.pricing import cost_usd, prices_of
from polyroute.config import ModelConfig
from polyroute.providers.base import Usage


def answer_cost_usd(
    model: ModelConfig | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_tokens: int = 0,
) -> float | None:
    """USD for one answer, or None when the price or the token counts are not known.

    An unknown price is never $0 (local models say ``0.0`` explicitly in their config).
    """
    if model is None or input_tokens is None or output_tokens is None:
        return None
    usage = Usage(
        prompt_tokens=input_tokens, completion_tokens=output_tokens, cached_tokens=cached_tokens
    )
    return cost_usd(prices_of(model), usage)
