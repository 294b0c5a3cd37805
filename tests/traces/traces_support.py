"""Configs and helpers shared by the trace, feedback and online-learning tests."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import remote_config

from polyroute.config import Config
from polyroute.store import Store

USER = [{"role": "user", "content": "route me"}]


def traced_config(
    base_url: str,
    db_url: str,
    *,
    models: tuple[str, ...] = ("echo", "renamed"),
    routers: dict[str, Any] | None = None,
    store: dict[str, Any] | None = None,
    feedback: dict[str, Any] | None = None,
) -> Config:
    """The echo upstream's ``models``, with routers and store/feedback settings."""
    raw = remote_config(base_url, db_url).model_dump()
    raw["models"] = [m for m in raw["models"] if m["name"] in models]
    raw["routers"] = routers or {}
    raw["store"] = {**raw["store"], **(store or {})}
    if feedback is not None:
        raw["feedback"] = {**raw["feedback"], **feedback}
    return Config.model_validate(raw)


def wait_for_trace(db_url: str, trace_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """Poll the store until the recorder has written ``trace_id`` (bounded)."""
    store = Store(db_url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = store.get_trace(trace_id)
            if found is not None:
                return found
            time.sleep(0.02)
    finally:
        store.dispose()
    raise AssertionError(f"trace {trace_id} was not written within {timeout_s} s")


def read_trace(db_url: str, trace_id: str) -> dict[str, Any] | None:
    store = Store(db_url)
    try:
        return store.get_trace(trace_id)
    finally:
        store.dispose()
