"""Holds in flight while a gateway upgrades past 0007 are kept, one row per request.

0006 held a reservation as one row per subject (key, team); 0007 keeps one row per request
naming its key. A gateway killed just before the upgrade left holds of the old form: they
must still be charged once, at their reservation, when they expire.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from polyroute.auth.spec import KeySpec, TeamSpec
from polyroute.store import Store, db, schema
from polyroute.store.keys import KeyStore
from polyroute.store.ledger import EXPIRED_STATUS
from polyroute.store.migrations import MIGRATIONS


def test_holds_of_0006_are_copied_and_charged_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(store_url)
    upto = [name for name, _ in MIGRATIONS].index("0006_reservations") + 1
    monkeypatch.setattr(db, "MIGRATIONS", MIGRATIONS[:upto])
    store.migrate()
    keys = KeyStore(store.engine)
    keys.set_team("t", TeamSpec(budget_usd=1000e-9))
    key, _ = keys.create_key(KeySpec(budget_usd=1000e-9, team="t"))
    old = sa.table(
        "reservations",
        *(sa.column(c) for c in ("request_id", "subject_table", "subject_id", "period")),
        sa.column("amount_nusd"),
        sa.column("expires_at"),
    )
    expired = int(time.time()) - 1
    with store.engine.begin() as conn:
        # What the holds below reserved: 200 on the key, 200 + 100 on the team.
        conn.execute(schema.api_keys.update().values(reserved_nusd=200))
        conn.execute(schema.teams.update().values(reserved_nusd=300))
        conn.execute(
            old.insert(),
            [
                {"request_id": "both", "subject_table": "api_keys", "subject_id": key.id,
                 "period": "total", "amount_nusd": 200, "expires_at": expired},
                {"request_id": "both", "subject_table": "teams", "subject_id": "t",
                 "period": "total", "amount_nusd": 200, "expires_at": expired},
                {"request_id": "team-only", "subject_table": "teams", "subject_id": "t",
                 "period": "total", "amount_nusd": 100, "expires_at": expired},
            ],
        )  # fmt: skip

    monkeypatch.setattr(db, "MIGRATIONS", MIGRATIONS)
    assert store.migrate()[0] == "0007_holds"
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.holds).order_by(schema.holds.c.request_id)).all()
        assert not sa.inspect(conn).has_table("reservations")
    assert [(r.request_id, r.key_id, r.team_id, r.key_period, r.team_period) for r in rows] == [
        ("both", key.id, "t", "total", "total"),
        ("team-only", None, "t", None, "total"),
    ]

    assert keys.expire_holds() == 2
    assert keys.expire_holds() == 0  # once
    with store.engine.connect() as conn:
        for table, spent in ((schema.api_keys, 200), (schema.teams, 300)):
            row = conn.execute(sa.select(table.c.spent_nusd, table.c.reserved_nusd)).one()
            assert (row.spent_nusd, row.reserved_nusd) == (spent, 0)
        usage = conn.execute(
            sa.select(schema.key_usage.c.request_id, schema.key_usage.c.status)
        ).all()
    # An old team-only hold did not name its key: its usage row cannot be written.
    assert [tuple(u) for u in usage] == [("both", EXPIRED_STATUS)]
    store.dispose()
