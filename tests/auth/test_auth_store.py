"""The key store: secrets as salted hashes, and reservations that are all-or-none and exact."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from polyroute.auth import secrets
from polyroute.auth.budget import period_start, prompt_tokens_upper
from polyroute.auth.spec import KeySpec, KeyUpdate, TeamSpec, parse_expiry
from polyroute.store import Store, schema
from polyroute.store.keys import KeyNotFound, KeyStore
from polyroute.store.ledger import Ask, Charge, Hold


@pytest.fixture
def keys(store_url: str) -> KeyStore:
    store = Store(store_url)
    store.migrate()
    return KeyStore(store.engine)


def test_a_secret_is_checked_against_its_salted_hash_only(keys: KeyStore) -> None:
    key, secret = keys.create_key(KeySpec(alias="a"))
    assert secrets.key_id_of(secret) == key.id
    stored = keys.lookup(key.id)
    assert stored is not None
    assert secret not in (stored.salt, stored.secret_hash)
    assert secrets.matches(stored.salt, stored.secret_hash, secret)
    assert not secrets.matches(stored.salt, stored.secret_hash, secret + "x")
    other, _ = keys.create_key(KeySpec())
    assert keys.lookup(other.id).salt != stored.salt  # type: ignore[union-attr]


def test_update_rotate_revoke(keys: KeyStore) -> None:
    key, old = keys.create_key(KeySpec(alias="svc", models=["a"]))
    changed = keys.update("svc", KeyUpdate(rpm=3, models=["a", "b"]))
    assert (changed.limits.rpm, changed.models) == (3, ("a", "b"))
    _, new = keys.rotate(key.id)
    stored = keys.lookup(key.id)
    assert stored is not None
    assert secrets.matches(stored.salt, stored.secret_hash, new)
    assert not secrets.matches(stored.salt, stored.secret_hash, old)
    assert keys.revoke("svc").why_unusable() == "this key has been revoked"
    with pytest.raises(KeyNotFound):
        keys.require("nobody")


def _spent_reserved(keys: KeyStore, table: sa.Table, id_: str) -> tuple[int, int]:
    with keys.engine.connect() as conn:
        row = conn.execute(
            sa.select(table.c.spent_nusd, table.c.reserved_nusd).where(table.c.id == id_)
        ).one()
    return int(row[0]), int(row[1])


def test_a_reservation_fits_every_budget_or_takes_nothing(keys: KeyStore) -> None:
    keys.set_team("t", TeamSpec(budget_usd=100e-9))
    key, _ = keys.create_key(KeySpec(budget_usd=1000e-9, team="t"))
    charges = (Charge(schema.api_keys, key.id, "total"), Charge(schema.teams, "t", "total"))
    asks = [Ask(r, key.id, charges, n) for r, n in (("a", 60), ("b", 60), ("c", 40))]
    assert keys.reserve_many(asks) == [True, False, True]
    # The refused one took nothing from the key either.
    assert _spent_reserved(keys, schema.api_keys, key.id) == (0, 100)
    assert _spent_reserved(keys, schema.teams, "t") == (0, 100)
    assert keys.remaining(charges) == 0
    keys.settle({"a": Hold(charges, 60, 50), "c": Hold(charges, 40, 20)})
    assert _spent_reserved(keys, schema.api_keys, key.id) == (70, 0)
    assert _spent_reserved(keys, schema.teams, "t") == (70, 0)
    assert keys.remaining(charges) == 30


def test_spend_starts_again_with_each_period(keys: KeyStore) -> None:
    key, _ = keys.create_key(KeySpec(budget_usd=100e-9, period="daily"))
    charge = (Charge(schema.api_keys, key.id, "daily"),)
    assert keys.reserve_many([Ask("a", key.id, charge, 100)]) == [True]
    keys.settle({"a": Hold(charge, 100, 100)})
    assert keys.reserve_many([Ask("b", key.id, charge, 1)]) == [False]
    yesterday = period_start("daily") - 86400
    with keys.engine.begin() as conn:
        conn.execute(schema.api_keys.update().values(period_start=yesterday))
    # A new day: the budget is whole again.
    assert keys.reserve_many([Ask("c", key.id, charge, 100)]) == [True]


def test_periods_and_expiry_parse() -> None:
    monday = datetime(2026, 12, 2, 15, tzinfo=UTC)  # a Wednesday
    assert period_start("weekly", monday) == int(datetime(2026, 11, 30, tzinfo=UTC).timestamp())
    assert period_start("monthly", monday) == int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    assert period_start("total", monday) == 0
    soon = parse_expiry("2d")
    assert timedelta(days=1.9) < soon - datetime.now(UTC) < timedelta(days=2.1)
    assert parse_expiry("2027-01-31").tzinfo is not None
    with pytest.raises(ValueError, match="not an expiry"):
        parse_expiry("next tuesday")


def test_the_prompt_bound_is_never_below_the_bytes() -> None:
    body = {"messages": [{"role": "user", "content": "héllo wörld"}]}
    assert prompt_tokens_upper(body) >= len("héllo wörld".encode())


def test_a_batch_locks_its_keys_in_id_order_on_postgresql(postgres_url: str) -> None:
    """Two replicas whose batches hold the same keys in opposite orders would each wait for
    the other (a deadlock PostgreSQL breaks by failing one batch): a batch locks its keys
    in id order first. Here the batch asks for the later key first while another
    transaction holds it: the earlier key is locked all the same, before the wait."""
    store = Store(postgres_url)
    store.migrate()
    keys = KeyStore(store.engine)
    a, b = sorted(
        (keys.create_key(KeySpec(budget_usd=1e-6))[0] for _ in range(2)), key=lambda k: k.id
    )
    charge = {k.id: (Charge(schema.api_keys, k.id, "total"),) for k in (a, b)}
    by_id = schema.api_keys.c.id
    holder = store.engine.connect()
    holder.begin()
    holder.execute(sa.select(by_id).where(by_id == b.id).with_for_update())
    answers: list[list[bool]] = []
    batch = [Ask("later", b.id, charge[b.id], 10), Ask("earlier", a.id, charge[a.id], 10)]
    worker = threading.Thread(target=lambda: answers.append(keys.reserve_many(batch)))
    worker.start()

    def earlier_is_locked() -> bool:
        with store.engine.connect() as probe:
            try:
                probe.execute(sa.select(by_id).where(by_id == a.id).with_for_update(nowait=True))
            except sa.exc.OperationalError:
                return True
            return False

    deadline = time.monotonic() + 10
    while not earlier_is_locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert earlier_is_locked()  # taken in order, while the batch waits for the later key
    holder.rollback()
    holder.close()
    worker.join(10)
    assert answers == [[True, True]]
    store.dispose()
