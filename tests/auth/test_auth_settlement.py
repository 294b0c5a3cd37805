"""Settlements: what finishes while a flush is in the store is written by the next one."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any, TypeVar

from tests.auth.support import auth_config

from polyroute.auth.keys import KeyInfo
from polyroute.auth.spec import KeySpec
from polyroute.gateway.admission import Admission, Ticket
from polyroute.providers.pool import ProviderPool
from polyroute.store import Store
from polyroute.store.keys import KeyStore
from polyroute.store.recorder import RequestRecord


class SlowKeyStore(KeyStore):
    """Holds its first settlement until told to go on."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.entered, self.go = threading.Event(), threading.Event()
        self.calls = 0

    def settle(self, *args: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.go.wait(10)
        super().settle(*args)


def _finish(admission: Admission, key: KeyInfo, trace_id: str) -> None:
    admission._open[trace_id] = Ticket(key, [], [], trace_id=trace_id)
    record = RequestRecord(
        id=trace_id, created_at=datetime.now(UTC), requested_model="echo", stream=False
    )
    record.model, record.cost_usd, record.cost_status = "echo", 1e-6, "known"
    admission.finished(record)


K = TypeVar("K", bound=KeyStore)


def _parts(db_url: str, keys_type: type[K]) -> tuple[Store, K, Admission]:
    """A migrated store, its keys (of ``keys_type``) and the admission that settles them."""
    store = Store(db_url)
    store.migrate()
    keys = keys_type(store.engine)
    config = auth_config("http://127.0.0.1:9/v1", db_url)
    return store, keys, Admission(config, keys, ProviderPool(config), None)


async def test_a_request_finishing_during_a_flush_is_written_by_the_next(db_url: str) -> None:
    store, keys, admission = _parts(db_url, SlowKeyStore)
    key, _ = keys.create_key(KeySpec())
    _finish(admission, key, "chatcmpl-a")
    await asyncio.to_thread(keys.entered.wait, 10)  # the first flush is in the store now
    _finish(admission, key, "chatcmpl-b")
    keys.go.set()
    for _ in range(200):  # bounded: 10 s
        if keys.spend(key.id)["by_model"].get("echo", {}).get("requests") == 2:
            break
        await asyncio.sleep(0.05)
    assert keys.spend(key.id)["by_model"]["echo"]["requests"] == 2
    await admission.aclose()
    store.dispose()


class FlakyKeyStore(KeyStore):
    """Its first two settlements fail, as a store that is briefly locked would."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls = 0

    def settle(self, *args: Any) -> None:
        self.calls += 1
        if self.calls <= 2:
            raise RuntimeError("database is locked")
        super().settle(*args)


async def test_a_failed_settlement_is_tried_again_not_dropped(db_url: str) -> None:
    store, keys, admission = _parts(db_url, FlakyKeyStore)
    key, _ = keys.create_key(KeySpec())
    _finish(admission, key, "chatcmpl-a")
    for _ in range(200):  # bounded: 10 s
        if keys.spend(key.id)["by_model"].get("echo", {}).get("requests") == 1:
            break
        await asyncio.sleep(0.05)
    assert keys.calls == 3
    assert keys.spend(key.id)["by_model"]["echo"]["requests"] == 1
    await admission.aclose()
    store.dispose()
