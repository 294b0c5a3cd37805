"""Configs and helpers the auth tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from polyroute.config import Config

R = TypeVar("R")

ADMIN = "admin-key-for-tests-0123456789"


def auth_config(base_url: str, db_url: str, **auth: Any) -> Config:
    """The echo upstream with priced models, and keys looked up afresh every 0.2 s."""
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "auth": {"cache_ttl_s": 0.2, **auth},
            "providers": {"up": {"api": "openai", "base_url": base_url}},
            "models": [
                {"name": "echo", "provider": "up", "input_price": 1.0, "output_price": 2.0},
                # $1 per million output tokens, input free: a request's worst case is exact.
                {"name": "exact", "provider": "up", "upstream_model": "echo",
                 "input_price": 0.0, "output_price": 1.0},
                # $1000 per million output tokens: $0.001 a token, so $0.01 lasts a few calls.
                {"name": "dear", "provider": "up", "upstream_model": "echo",
                 "input_price": 0.0, "output_price": 1000.0},
                {"name": "refused", "provider": "up", "upstream_model": "fail-400"},
                {"name": "broken", "provider": "up", "upstream_model": "fail-500",
                 "input_price": 1.0, "output_price": 1.0},
                {"name": "mystery", "provider": "up", "upstream_model": "echo"},
            ],
        }
    )  # fmt: skip


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN}"}


def create_key(root: str, **spec: Any) -> dict[str, Any]:
    """Create a key through the admin API; return its JSON (with ``secret``)."""
    r = httpx.post(f"{root}/admin/keys", json=spec, headers=admin_headers(), timeout=10)
    assert r.status_code == 201, r.text
    return dict(r.json())


def eventually(check: Callable[[], R], timeout_s: float = 15.0) -> R:
    """``check()``'s value once it stops failing its assertions: what the recorder and the
    settlements write lands a moment after the answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (AssertionError, KeyError, StopIteration):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def key_money(root: str, key_id: str) -> dict[str, Any]:
    """A key as the admin API shows it, once no reservation is pending."""

    def settled() -> dict[str, Any]:
        shown = httpx.get(f"{root}/admin/keys/{key_id}", headers=admin_headers()).json()
        assert shown["spend"]["reserved_usd"] == 0
        assert shown["spend"]["by_model"]
        return dict(shown)

    return eventually(settled)
