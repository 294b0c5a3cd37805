"""Held reservations: settled once, or, when their gateway died, charged once after expiry.

A replica killed mid-request never settles its reservations; without an expiry they would
hold the budget forever. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from polyroute.auth.spec import KeySpec, TeamSpec
from polyroute.store import Store, schema
from polyroute.store.keys import KeyStore
from polyroute.store.ledger import EXPIRED_STATUS, Ask, Charge, Hold


@pytest.fixture
def keys(store_url: str) -> KeyStore:
    store = Store(store_url)
    store.migrate()
    return KeyStore(store.engine)


def _money(keys: KeyStore, table: sa.Table, id_: str) -> tuple[int, int]:
    with keys.engine.connect() as conn:
        row = conn.execute(
            sa.select(table.c.spent_nusd, table.c.reserved_nusd).where(table.c.id == id_)
        ).one()
    return int(row[0]), int(row[1])


def _usage(keys: KeyStore) -> list[tuple[str, int, int]]:
    u = schema.key_usage
    with keys.engine.connect() as conn:
        rows = conn.execute(sa.select(u.c.request_id, u.c.status, u.c.cost_nusd)).all()
    return sorted((r[0], int(r[1]), int(r[2])) for r in rows)


def _charges(keys: KeyStore) -> tuple[str, tuple[Charge, ...]]:
    keys.set_team("t", TeamSpec(budget_usd=1000e-9))
    key, _ = keys.create_key(KeySpec(budget_usd=1000e-9, team="t"))
    return key.id, (Charge(schema.api_keys, key.id, "total"), Charge(schema.teams, "t", "total"))


def test_an_expired_hold_is_charged_once_and_its_late_settlement_skipped(keys: KeyStore) -> None:
    key_id, charges = _charges(keys)
    asks = [Ask("dead", key_id, charges, 300), Ask("live", key_id, charges, 200)]
    assert keys.reserve_many(asks, ttl_s=60) == [True, True]
    assert _money(keys, schema.api_keys, key_id) == (0, 500)
    assert keys.expire_holds() == 0  # not expired yet: nothing happens
    assert _money(keys, schema.api_keys, key_id) == (0, 500)

    # "live" settles in time at 120; "dead" never does (its gateway was killed).
    keys.settle({"live": Hold(charges, 200, 120)})
    assert _money(keys, schema.api_keys, key_id) == (120, 300)

    later = time.time() + 61
    assert keys.expire_holds(now=later) == 1
    assert keys.expire_holds(now=later) == 0  # charged once
    for table, id_ in ((schema.api_keys, key_id), (schema.teams, "t")):
        assert _money(keys, table, id_) == (420, 0)  # the dead one at its worst case
    assert _usage(keys) == [("dead", EXPIRED_STATUS, 300)]

    # The dead request's gateway settling after all (it had only stalled) changes nothing,
    # and its usage row is not written twice.
    late_row = {"request_id": "dead", "key_id": key_id, "team_id": "t", "status": 200,
                "created_at": sa.func.now(), "cost_nusd": 10}  # fmt: skip
    keys.settle({"dead": Hold(charges, 300, 10)}, [late_row])
    assert _money(keys, schema.api_keys, key_id) == (420, 0)
    assert _usage(keys) == [("dead", EXPIRED_STATUS, 300)]
    # The budget left is exact: 1000 - 420.
    assert keys.remaining(charges) == 580


def test_a_refused_reservation_holds_nothing(keys: KeyStore) -> None:
    key_id, charges = _charges(keys)
    asks = [Ask("a", key_id, charges, 900), Ask("b", key_id, charges, 200)]
    assert keys.reserve_many(asks, ttl_s=1) == [True, False]
    assert keys.expire_holds(now=time.time() + 5) == 1  # "a" only: "b" was never held
    assert _money(keys, schema.api_keys, key_id) == (900, 0)
    assert [r[0] for r in _usage(keys)] == ["a"]


def test_an_expired_hold_on_a_team_budget_alone_is_recorded_under_its_key(
    keys: KeyStore,
) -> None:
    keys.set_team("t", TeamSpec(budget_usd=1000e-9))
    key, _ = keys.create_key(KeySpec(team="t"))  # no budget of its own
    team = (Charge(schema.teams, "t", "total"),)
    assert keys.reserve_many([Ask("gone", key.id, team, 250)], ttl_s=1) == [True]
    assert keys.expire_holds(now=time.time() + 5) == 1
    assert _money(keys, schema.teams, "t") == (250, 0)
    assert _usage(keys) == [("gone", EXPIRED_STATUS, 250)]
    assert keys.owner("gone") == key.id
