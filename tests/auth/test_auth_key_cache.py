"""The gate's key cache: one store read per secret however many requests miss together,
and a revocation still seen once the entry expires."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from polyroute.auth.spec import KeySpec
from polyroute.config import Config
from polyroute.gateway.auth import Gate
from polyroute.store import Store
from polyroute.store.keys import KeyStore, StoredKey


class CountingKeys(KeyStore):
    """The real key store, counting the gateway's reads (and able to fail one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0
        self.fail_next = False

    def lookup(self, key_id: str) -> StoredKey | None:
        self.reads += 1
        time.sleep(0.02)  # a read that takes a moment: the others arrive meanwhile
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database unavailable")
        return super().lookup(key_id)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Gate, CountingKeys, str, str]:
    url = f"sqlite:///{tmp_path / 'polyroute.db'}"
    store = Store(url)
    store.migrate()
    keys = CountingKeys(store.engine)
    info, secret = keys.create_key(KeySpec.model_validate({}))
    cfg = Config.model_validate({"store": {"database_url": url}, "auth": {"cache_ttl_s": 0.2}})
    return Gate(cfg, keys), keys, secret, info.id


def test_requests_that_miss_together_share_one_read(
    parts: tuple[Gate, CountingKeys, str, str],
) -> None:
    gate, keys, secret, key_id = parts

    async def many() -> list[Any]:
        return list(await asyncio.gather(*(gate.key_for(secret) for _ in range(64))))

    found = asyncio.run(many())
    assert all(k is not None and k.id == key_id for k in found)
    assert keys.reads == 1
    asyncio.run(many())  # still cached
    assert keys.reads == 1
    time.sleep(0.25)  # expired: the next burst reads once more
    asyncio.run(many())
    assert keys.reads == 2


def test_a_revoked_key_is_refused_once_its_entry_expires(
    parts: tuple[Gate, CountingKeys, str, str],
) -> None:
    gate, keys, secret, key_id = parts
    assert asyncio.run(gate.key_for(secret)) is not None
    keys.revoke(key_id)
    time.sleep(0.25)
    assert asyncio.run(gate.key_for(secret)) is None


def test_a_failed_read_fails_its_waiters_and_the_next_request_reads_again(
    parts: tuple[Gate, CountingKeys, str, str],
) -> None:
    gate, keys, secret, key_id = parts
    keys.fail_next = True

    async def burst() -> list[Any]:
        return list(
            await asyncio.gather(*(gate.key_for(secret) for _ in range(8)), return_exceptions=True)
        )

    results = asyncio.run(burst())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert keys.reads == 1
    key = asyncio.run(gate.key_for(secret))  # nothing left pending: a fresh read
    assert key is not None and key.id == key_id
    assert keys.reads == 2
