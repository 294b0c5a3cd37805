"""What one answer cost. The single place to swap in the model hub's prices.

:func:`answer_cost_usd` prices from the model's config (``input_price`` / ``output_price``,
USD per million tokens). When ``polyroute.catalog`` lands, this function is the one to
change so the bench prices answers exactly as the gateway's recorder does.
"""

from __future__ import annotations

from polyroute.config import ModelConfig


def answer_cost_usd(
    model: ModelConfig | None, input_tokens: int | None, output_tokens: int | None
) -> float | None:
    """USD for one answer, or None when the price or the token counts are not known.

    An unknown price is never $0 (local models say ``0.0`` explicitly in their config).
    """
    if model is None or model.input_price is None or model.output_price is None:
        return None
    if input_tokens is None or output_tokens is None:
        return None
    return (input_tokens * model.input_price + output_tokens * model.output_price) / 1_000_000
