"""What a request cost, from per-million-token prices and the usage an upstream reported.

An unknown price gives an unknown cost (``None``), never $0 and never another model's
price. Local models cost what their config says, zero money by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyroute.catalog.schema import Prices
from polyroute.errors import UnknownPrice

if TYPE_CHECKING:  # only annotations: the catalog loads without the provider stack
    from polyroute.config import ModelConfig
    from polyroute.providers.base import Usage

#: A model running on this machine: no money per token unless the config says otherwise.
LOCAL_PRICES = Prices(input=0.0, output=0.0, cached_input=0.0, cache_write=0.0)


def prices_of(model: ModelConfig) -> Prices:
    """The prices written in (or filled into) a model's config."""
    if model.price_tiers:
        return Prices(
            input=model.input_price,
            output=model.output_price,
            cached_input=model.cached_input_price,
            cache_write=model.cache_write_price,
            tiers=tuple(model.price_tiers),
        )
    # Without tiers, the default is not validated again: this runs for every answer.
    return Prices(
        input=model.input_price,
        output=model.output_price,
        cached_input=model.cached_input_price,
        cache_write=model.cache_write_price,
    )


def priced_at(model: ModelConfig, prompt_tokens: int) -> ModelConfig:
    """``model`` with the flat prices a prompt of ``prompt_tokens`` bills at (its tier's),
    for estimates that read ``input_price`` and ``output_price`` (budget reservations)."""
    if not model.price_tiers:
        return model
    at = prices_of(model).at(prompt_tokens)
    if at.tiers:
        return model  # no tier applies: its base prices
    return model.model_copy(
        update={
            "input_price": at.input,
            "output_price": at.output,
            "cached_input_price": at.cached_input,
            "cache_write_price": at.cache_write,
            "price_tiers": [],
        }
    )


def cost_usd(prices: Prices, usage: Usage) -> float | None:
    """USD for ``usage`` at ``prices``, or ``None`` when the input or output price is unknown.

    ``usage.prompt_tokens`` includes ``usage.cached_tokens`` and ``usage.cache_write_tokens``
    (as OpenAI reports them); cache reads bill at ``prices.cached_input`` and cache writes at
    ``prices.cache_write`` when known, else at ``prices.input``. A prompt longer than a
    tier's threshold bills the whole request at that tier's prices (:meth:`Prices.at`).
    """
    if prices.tiers:
        prices = prices.at(usage.prompt_tokens)
    if prices.input is None or prices.output is None:
        return None
    prompt = max(0, usage.prompt_tokens)
    cached = max(0, min(usage.cached_tokens, prompt))
    written = max(0, min(usage.cache_write_tokens, prompt - cached))
    uncached = prompt - cached - written
    cached_price = prices.cached_input if prices.cached_input is not None else prices.input
    write_price = prices.cache_write if prices.cache_write is not None else prices.input
    return (
        uncached * prices.input
        + cached * cached_price
        + written * write_price
        + max(0, usage.completion_tokens) * prices.output
    ) / 1_000_000


def require_cost_usd(prices: Prices, usage: Usage, *, model: str) -> float:
    """Like :func:`cost_usd`, but an unknown price raises :class:`polyroute.errors.UnknownPrice`."""
    usd = cost_usd(prices, usage)
    if usd is None:
        missing = [n for n in ("input", "output") if getattr(prices, n) is None]
        raise UnknownPrice(
            f"the {' and '.join(missing)} price of {model!r} is not known: set input_price and "
            "output_price in its config, or a catalog_id that has them"
        )
    return usd
