"""Settlements: what finishes while a flush is in the store is written by the next one."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
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


def _record(trace_id: str) -> RequestRecord:
    record = RequestRecord(
        id=trace_id, created_at=datetime.now(UTC), requested_model="echo", stream=False
    )
    record.model, record.cost_usd, record.cost_status = "echo", 1e-6, "known"
    return record


def _finish(admission: Admission, key: KeyInfo, trace_id: str) -> None:
    admission._open[trace_id] = Ticket(key, [], [], trace_id=trace_id)
    admission.finished(_record(trace_id))


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


class LostCommitKeyStore(KeyStore):
    """Its first settlement is written, but reported failed (the connection lost during the
    commit), so the gateway tries it again."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls = 0

    def settle(self, *args: Any) -> None:
        self.calls += 1
        super().settle(*args)
        if self.calls == 1:
            raise RuntimeError("server closed the connection unexpectedly")


async def test_a_settlement_tried_again_after_a_lost_commit_is_written_once(db_url: str) -> None:
    store, keys, admission = _parts(db_url, LostCommitKeyStore)
    key, _ = keys.create_key(KeySpec())
    _finish(admission, key, "chatcmpl-a")
    for _ in range(200):  # bounded: 10 s
        if keys.calls >= 2 and not admission._usage and not admission._failed_flushes:
            break
        await asyncio.sleep(0.05)
    assert keys.calls == 2  # the second try went through: its row was there already
    assert admission._usage == [] and admission._failed_flushes == 0
    assert keys.spend(key.id)["by_model"]["echo"]["requests"] == 1
    await admission.aclose()
    store.dispose()


class PoisonKeyStore(KeyStore):
    """Refuses every settlement that has the request ``chatcmpl-poison`` in it."""

    def settle(self, holds: Any, usage: Any = (), connection: Any = None) -> None:
        if any(row["request_id"] == "chatcmpl-poison" for row in usage):
            raise RuntimeError("value out of range")
        super().settle(holds, usage, connection)


async def test_one_request_the_store_refuses_does_not_sink_those_settled_with_it(
    db_url: str,
) -> None:
    store, keys, admission = _parts(db_url, PoisonKeyStore)
    key, _ = keys.create_key(KeySpec())
    _finish(admission, key, "chatcmpl-poison")
    _finish(admission, key, "chatcmpl-good")
    for _ in range(200):  # bounded: 10 s
        if keys.spend(key.id)["by_model"].get("echo", {}).get("requests") == 1:
            break
        await asyncio.sleep(0.05)
    assert keys.spend(key.id)["by_model"]["echo"]["requests"] == 1  # the good one
    assert [row["request_id"] for row in admission._usage] == ["chatcmpl-poison"]
    await admission.aclose(wait_s=0)
    store.dispose()


async def test_closing_waits_for_the_requests_in_flight_and_settles_them(db_url: str) -> None:
    store, keys, admission = _parts(db_url, KeyStore)
    key, _ = keys.create_key(KeySpec())
    admission._open["chatcmpl-late"] = Ticket(key, [], [], trace_id="chatcmpl-late")
    closing = asyncio.ensure_future(admission.aclose())
    await asyncio.sleep(0.2)
    assert not closing.done()  # waiting for the request in flight
    _finish(admission, key, "chatcmpl-late")
    await asyncio.wait_for(closing, 10)
    assert keys.spend(key.id)["by_model"]["echo"]["requests"] == 1  # written before it returned
    assert admission._store._queue is None  # and no store thread started after
    store.dispose()


async def test_closing_says_how_many_reservations_are_left_to_expire(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, keys, admission = _parts(db_url, KeyStore)
    key, _ = keys.create_key(KeySpec())
    admission._open["chatcmpl-stuck"] = Ticket(key, [], [], reserved=5, trace_id="chatcmpl-stuck")
    with caplog.at_level(logging.ERROR, logger="polyroute.gateway.admission"):
        await asyncio.wait_for(admission.aclose(wait_s=0.1), 10)
    assert any("closing with 1 reservations not settled" in r.getMessage() for r in caplog.records)
    store.dispose()


async def test_a_request_arriving_after_closing_began_is_refused_with_retry_after(
    db_url: str,
) -> None:
    """Admitted while closing, it would reserve budget no one is left to settle."""
    from starlette.requests import Request

    from polyroute.auth.keys import KEY_SCOPE
    from polyroute.errors import ShuttingDown
    from polyroute.gateway.protocol import ChatCompletionRequest

    store, keys, admission = _parts(db_url, KeyStore)
    key, _ = keys.create_key(KeySpec(budget_usd=1.0))
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    chat = ChatCompletionRequest.model_validate(body)
    request = Request({"type": "http", "method": "POST", "headers": [], KEY_SCOPE: key})
    ticket = await admission.admit(request, chat, body, "chatcmpl-before")
    assert ticket is not None and ticket.reserved > 0  # open: admitted and reserved
    admission.finished(_record("chatcmpl-before"))
    await admission.aclose()
    with pytest.raises(ShuttingDown) as refused:
        await admission.admit(request, chat, body, "chatcmpl-after")
    assert refused.value.status_code == 503 and refused.value.retry_after_s == 1.0
    assert "chatcmpl-after" not in admission._open
    spend = keys.spend(key.id)["by_model"]["echo"]
    assert spend["requests"] == 1  # only the one admitted before closing
    store.dispose()
