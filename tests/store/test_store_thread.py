"""The store thread: calls in order on one connection, and asks decided in batches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from polyroute.store.thread import GroupCommit, StoreThread


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / 'thread.db'}")


async def test_asks_made_while_a_batch_is_in_the_store_go_together_in_the_next(
    engine: sa.Engine,
) -> None:
    entered, go = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run(connection: Any, asks: Sequence[int]) -> list[int]:
        batches.append(list(asks))
        if len(batches) == 1:
            entered.set()
            go.wait(10)
        return [a * 10 for a in asks]

    thread = StoreThread(engine)
    commit: GroupCommit[int, int] = GroupCommit(thread, run)
    first = asyncio.ensure_future(commit.ask(1))
    await asyncio.to_thread(entered.wait, 10)  # the first batch is in the store
    rest = [asyncio.ensure_future(commit.ask(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.05)
    go.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40]
    assert batches == [[1], [2, 3, 4]]
    await thread.aclose()


async def test_a_failed_batch_fails_its_asks_and_the_next_starts_on_a_fresh_connection(
    engine: sa.Engine,
) -> None:
    seen: list[Any] = []

    def run(connection: Any, asks: Sequence[str]) -> list[str]:
        seen.append(connection.dbapi_connection)
        if asks[0] == "bad":
            raise RuntimeError("database is locked")
        return list(asks)

    thread = StoreThread(engine)
    commit: GroupCommit[str, str] = GroupCommit(thread, run)
    with pytest.raises(RuntimeError, match="locked"):
        await commit.ask("bad")
    assert await commit.ask("good") == "good"
    assert seen[0] is not seen[1]  # the failed one's connection was given up
    assert await thread.call(lambda c: c.dbapi_connection) is seen[1]  # then kept
    await thread.aclose()


async def test_an_answer_whose_asker_left_goes_to_orphan(engine: sa.Engine) -> None:
    entered, go = threading.Event(), threading.Event()
    orphans: list[tuple[str, bool]] = []

    def run(connection: Any, asks: Sequence[str]) -> list[bool]:
        entered.set()
        go.wait(10)
        return [True] * len(asks)

    thread = StoreThread(engine)
    commit: GroupCommit[str, bool] = GroupCommit(
        thread, run, lambda ask, answer: orphans.append((ask, answer))
    )
    left = asyncio.ensure_future(commit.ask("gone"))
    await asyncio.to_thread(entered.wait, 10)
    left.cancel()
    go.set()
    for _ in range(100):  # bounded: 5 s
        if orphans:
            break
        await asyncio.sleep(0.05)
    assert orphans == [("gone", True)]
    await thread.aclose()


async def test_a_call_after_aclose_is_still_answered(engine: sa.Engine) -> None:
    thread = StoreThread(engine)
    assert await thread.call(lambda c: 1) == 1
    await thread.aclose()
    assert await asyncio.wait_for(thread.call(lambda c: 2), 5) == 2  # on a new thread
    await thread.aclose()
