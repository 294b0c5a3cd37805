"""Money as exact integers, budget periods, and a request's worst-case cost.

Amounts are nano-USD (1e-9 USD) integers: fifty concurrent reservations and settlements add
up exactly, in SQLite and PostgreSQL alike, which floats would not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from polyroute.config import ModelConfig
from polyroute.providers.base import Usage

Period = Literal["total", "daily", "weekly", "monthly"]
PERIODS: tuple[str, ...] = ("total", "daily", "weekly", "monthly")
NANO = 1_000_000_000


def to_nano(usd: float) -> int:
    return round(usd * NANO)


def to_usd(nano: int) -> float:
    return nano / NANO


def period_start(period: str, now: datetime | None = None) -> int:
    """Unix seconds when the current ``period`` began (UTC); 0 for ``total``."""
    now = now or datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start = day
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())  # Monday
    elif period == "monthly":
        start = day.replace(day=1)
    else:
        return 0
    return int(start.timestamp())


def prompt_tokens_upper(body: dict[str, Any]) -> int:
    """An upper bound on the prompt's tokens: its UTF-8 bytes plus per-message framing.

    A byte-level tokenizer never makes more tokens than bytes, so a reservation built on
    this can only be too large (and is refunded at settlement), never too small.
    """
    messages = body.get("messages") or []
    total = 3
    for m in messages:
        total += 4
        if isinstance(m, dict):
            for value in m.values():
                if isinstance(value, str):
                    total += len(value.encode())
                elif value is not None:
                    total += len(repr(value).encode())
    for extra in ("tools", "response_format"):
        if body.get(extra) is not None:
            total += len(repr(body[extra]).encode())
    return total


def nano_per_token(model: ModelConfig) -> tuple[int, int] | None:
    """(input, output) price in nano-USD per token, rounded up; None when not known."""
    if model.input_price is None or model.output_price is None:
        return None
    # USD per million tokens → nano-USD per token is ×1000; ceil keeps the bound an upper one.
    return -(-round(model.input_price * 1_000_000) // 1000), -(
        -round(model.output_price * 1_000_000) // 1000
    )


def cost_nano(model: ModelConfig, usage: Usage) -> int | None:
    """What ``usage`` cost on ``model`` in nano-USD (None when its price is not known)."""
    from polyroute.catalog.pricing import cost_usd, prices_of

    usd = cost_usd(prices_of(model), usage)
    return None if usd is None else to_nano(usd)
