"""Budget leases: a budget with plenty left is reserved a slice at a time and spent from memory,
and budgets stay exact — near their end each request is decided by the store again.

Every request here asks for "exact" (input free, $1 per million output tokens) with
max_tokens=5: its worst case, 5000 nano-USD, is its real cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.requests import Request
from tests.auth.support import auth_config

from polyroute.auth.keys import KEY_SCOPE, KeyInfo
from polyroute.auth.spec import KeySpec
from polyroute.errors import BudgetExceeded
from polyroute.gateway.admission import Admission
from polyroute.gateway.leases import HEADROOM, IDLE_S
from polyroute.gateway.protocol import ChatCompletionRequest
from polyroute.providers.pool import ProviderPool
from polyroute.store import Store
from polyroute.store.keys import KeyStore
from polyroute.store.ledger import Charge
from polyroute.store.recorder import RequestRecord

COST = 5000
BODY = {"model": "exact", "messages": [{"role": "user", "content": "a b c d e"}], "max_tokens": 5}


class CountingKeyStore(KeyStore):
    """Counts the store statements that decide budgets."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.leases = self.reservations = 0

    def lease(self, charge: Charge, amount: int, room: int) -> bool:
        self.leases += 1
        return super().lease(charge, amount, room)

    def reserve_many(self, asks: Sequence[tuple[Sequence[Charge], int]]) -> list[bool]:
        self.reservations += len(asks)
        return super().reserve_many(asks)


def _parts(db_url: str, budget_requests: int, replicas: int = 1) -> tuple[Any, ...]:
    store = Store(db_url)
    store.migrate()
    config = auth_config("http://127.0.0.1:9/v1", db_url)
    keys = CountingKeyStore(store.engine)
    key, _ = keys.create_key(KeySpec(budget_usd=budget_requests * COST / 1e9))
    admissions = [Admission(config, keys, ProviderPool(config), None) for _ in range(replicas)]
    return store, keys, key, admissions


async def _one(admission: Admission, key: KeyInfo, n: int) -> bool:
    """One request admitted, answered at its worst case, and settled; False when refused."""
    request = Request({"type": "http", "method": "POST", "headers": [], KEY_SCOPE: key})
    body = dict(BODY)
    trace_id = f"chatcmpl-{n}"
    try:
        await admission.admit(request, ChatCompletionRequest.model_validate(body), body, trace_id)
    except BudgetExceeded:
        return False
    await asyncio.sleep(0)
    record = RequestRecord(
        id=trace_id, created_at=datetime.now(UTC), requested_model="exact", stream=False
    )
    record.model, record.cost_usd, record.cost_status = "exact", COST / 1e9, "known"
    admission.finished(record)
    return True


def _money(keys: KeyStore, key_id: str) -> tuple[int, int]:
    with keys.engine.connect() as conn:
        spent, reserved = conn.execute(
            sa.text("SELECT spent_nusd, reserved_nusd FROM api_keys WHERE id = :id"),
            {"id": key_id},
        ).one()
    return int(spent), int(reserved)


async def test_a_budget_with_plenty_left_is_leased_not_reserved_per_request(db_url: str) -> None:
    store, keys, key, (admission,) = _parts(db_url, budget_requests=100_000)
    for n in range(200):
        assert await _one(admission, key, n)
    assert keys.reservations == 0  # no request was decided by the store on its own
    assert 1 <= keys.leases <= 3
    await admission.flush()
    spent, reserved = _money(keys, key.id)
    assert spent == 200 * COST
    assert reserved > 0  # the unused part of the lease, held for the next requests
    await admission.aclose()
    assert _money(keys, key.id) == (200 * COST, 0)
    store.dispose()


async def test_an_idle_lease_goes_back_to_the_store(db_url: str) -> None:
    store, keys, key, (admission,) = _parts(db_url, budget_requests=100_000)
    assert await _one(admission, key, 0)
    await admission.flush()
    assert _money(keys, key.id)[1] > 0
    for _ in range(int(IDLE_S * 3 / 0.05)):  # bounded: the keeper looks every IDLE_S / 2
        await asyncio.sleep(0.05)
        if _money(keys, key.id)[1] == 0:
            break
    assert _money(keys, key.id) == (COST, 0)
    await admission.aclose()
    store.dispose()


@pytest.mark.parametrize("at_once", [False, True])
async def test_near_the_end_every_request_is_the_stores_exactly_as_many_as_fit(
    db_url: str, at_once: bool
) -> None:
    store, keys, key, (admission,) = _parts(db_url, budget_requests=1000)
    if at_once:
        results = await asyncio.gather(*(_one(admission, key, n) for n in range(1200)))
    else:
        results = [await _one(admission, key, n) for n in range(1200)]
    assert sum(results) == 1000
    assert keys.leases >= 1 and keys.reservations >= 1  # leased first, one by one at the end
    await admission.aclose()
    assert _money(keys, key.id) == (1000 * COST, 0)
    store.dispose()


async def test_two_replicas_leasing_one_budget_never_spend_past_it(db_url: str) -> None:
    store, keys, key, admissions = _parts(db_url, budget_requests=1000, replicas=2)
    results = await asyncio.gather(*(_one(admissions[n % 2], key, n) for n in range(1500)))
    answered = sum(results)
    # A replica's unused slice may refuse the other's request early, by at most one slice
    # (never more than 1 / HEADROOM of what was left when it was granted).
    assert 1000 - 1000 // HEADROOM <= answered <= 1000
    for admission in admissions:
        await admission.aclose()
    assert _money(keys, key.id) == (answered * COST, 0)
    store.dispose()
