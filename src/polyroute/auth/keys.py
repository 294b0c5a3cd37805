"""A key as the gateway sees it: what it may use, and the limits it runs under."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

ADMIN_ID = "admin"
DASHBOARD = "dashboard"
PERMISSIONS: tuple[str, ...] = (DASHBOARD,)
#: Where the gateway's gate leaves the request's key in the ASGI scope.
KEY_SCOPE = "polyroute.key"


@dataclass(frozen=True, slots=True)
class Limits:
    """A budget (nano-USD, per period) and rate limits; None means no limit."""

    budget_nusd: int | None = None
    period: str = "total"
    soft_alert: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key's settings (never its secret)."""

    id: str
    alias: str | None = None
    team_id: str | None = None
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] | None = None
    routers: tuple[str, ...] | None = None
    permissions: tuple[str, ...] = ()
    store_text: bool = True
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    limits: Limits = field(default_factory=Limits)
    team_limits: Limits | None = None

    @property
    def is_admin(self) -> bool:
        return self.id == ADMIN_ID

    def why_unusable(self, now: datetime | None = None) -> str | None:
        """Why the key cannot be used now (revoked, expired), or None."""
        if self.revoked_at is not None:
            return "this key has been revoked"
        if self.expires_at is not None:
            expires = self.expires_at
            if expires.tzinfo is None:  # SQLite hands back naive UTC
                expires = expires.replace(tzinfo=UTC)
            if expires <= (now or datetime.now(UTC)):
                return f"this key expired at {expires.isoformat()}"
        return None

    def may_use(self, name: str, is_router: bool) -> bool:
        """Whether the key may ask for this model or router. A key limited to some models
        may use a router only when its routers are listed too (a router may pick any
        configured model)."""
        if is_router:
            if self.routers is None:
                return self.models is None
            return name in self.routers
        return self.models is None or name in self.models

    def public(self) -> dict[str, Any]:
        """The key as the admin API and ``keys show`` print it (no secret, no hash)."""
        lim = self.limits
        return {
            "id": self.id,
            "alias": self.alias,
            "team": self.team_id,
            "user": self.user,
            "metadata": self.metadata,
            "models": list(self.models) if self.models is not None else None,
            "routers": list(self.routers) if self.routers is not None else None,
            "permissions": list(self.permissions),
            "store_text": self.store_text,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "budget_usd": lim.budget_nusd / 1e9 if lim.budget_nusd is not None else None,
            "period": lim.period,
            "soft_alert": lim.soft_alert,
            "rpm": lim.rpm,
            "tpm": lim.tpm,
            "parallel": lim.parallel,
        }


ADMIN = KeyInfo(id=ADMIN_ID, alias="admin", permissions=PERMISSIONS)


def json_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    value = orjson.loads(text)
    return tuple(str(v) for v in value)


def scope_key(scope: Mapping[str, Any]) -> KeyInfo | None:
    """The key the gate found for this request (None when auth is off)."""
    found = scope.get(KEY_SCOPE)
    return found if isinstance(found, KeyInfo) else None


def utc(when: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
