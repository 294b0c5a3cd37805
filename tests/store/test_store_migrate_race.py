"""Replicas that start together on one fresh PostgreSQL database all come up migrated."""

from __future__ import annotations

import threading

from polyroute.store import Store
from polyroute.store.migrations import MIGRATIONS


def test_replicas_migrating_one_new_database_at_once_all_succeed(postgres_url: str) -> None:
    stores = [Store(postgres_url) for _ in range(4)]
    start = threading.Barrier(len(stores))
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def migrate(store: Store) -> None:
        start.wait(10)
        try:
            applied.append(store.migrate())
        except BaseException as e:  # the test reports any failure
            errors.append(e)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    names = [name for name, _ in MIGRATIONS]
    assert sorted(applied, key=len) == [[]] * (len(stores) - 1) + [names]  # one did it all
    assert stores[0].applied_migrations() == sorted(names)
    for s in stores:
        s.dispose()
