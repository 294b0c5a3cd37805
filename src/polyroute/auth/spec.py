"""What a key or team is created or updated with: validated options, shared by the CLI and
the admin API so that both accept exactly the same fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from polyroute.auth.keys import PERMISSIONS


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget_usd: float | None = Field(None, ge=0, description="USD per period; None: no budget")
    period: Literal["total", "daily", "weekly", "monthly"] | None = None
    soft_alert: float | None = Field(
        None, gt=0, le=1, description="Share of the budget at which `keys show` warns"
    )
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    parallel: int | None = Field(None, gt=0)


class KeySpec(_Options):
    """A new key (or, with every field optional, the changes of ``KeyUpdate``)."""

    alias: str | None = Field(None, min_length=1, max_length=200)
    team: str | None = Field(None, min_length=1, max_length=64)
    user: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    models: list[str] | None = None
    routers: list[str] | None = None
    permissions: list[str] = Field(default_factory=list)
    store_text: bool = True
    expires: datetime | None = None

    @field_validator("permissions")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for p in value:
            if p not in PERMISSIONS:
                raise ValueError(f"unknown permission {p!r} (known: {', '.join(PERMISSIONS)})")
        return value

    @field_validator("expires", mode="before")
    @classmethod
    def _expiry(cls, value: Any) -> Any:
        return parse_expiry(value) if isinstance(value, str) else value


class KeyUpdate(KeySpec):
    """Changes to a key: only the fields given are changed."""

    store_text: bool | None = None  # type: ignore[assignment]
    permissions: list[str] | None = None  # type: ignore[assignment]
    metadata: dict[str, Any] | None = None  # type: ignore[assignment]


class TeamSpec(_Options):
    """A team: keys that share a budget and rate limits."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str) -> datetime:
    """``30d``, ``12h``, ``90m`` (from now) or an ISO 8601 date or time (UTC if no zone)."""
    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return datetime.now(UTC) + timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an expiry: use e.g. 30d, 12h, 90m, 2027-01-31 or "
            "2027-01-31T12:00:00+00:00"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
