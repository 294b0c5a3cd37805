"""Several gateways share one journal (``serve --workers N``): one writer each, none lost.

A writer stores its own gateway's segments; another gateway's only once that gateway's
writer is gone (its ``<owner>.claim`` lock is free) and the gateway too (none of its
segments is locked). The process-level test, with ``kill -9``, is in
tests/gateway/test_gateway_workers.py.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tests.store.test_store_journal import normal

from polyroute.store import Store
from polyroute.store.journal import Journal
from polyroute.store.recorder import trace_line
from polyroute.store.writer import CLAIM, JournalWriter, _try_lock


def _journal(directory: Path, first: int, n: int) -> Journal:
    journal = Journal(directory)
    for i in range(first, first + n):
        journal.append(trace_line(normal(i)))
    return journal


def _claimed(directory: Path, owner: str) -> int:
    fd = _try_lock(directory / f"{owner}{CLAIM}")
    assert fd is not None
    return fd


def test_a_writer_leaves_a_live_gateways_segments_to_its_own_writer(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.migrate()
    mine, theirs = _journal(tmp_path, 0, 5), _journal(tmp_path, 100, 7)
    # Their writer died; their gateway lives (it holds the lock on its segment).
    writer = JournalWriter(store, tmp_path, owner=mine.owner)
    claim = _claimed(tmp_path, mine.owner)
    assert writer.drain(time.monotonic() + 30)
    assert store.count_traces() == 5 and writer.own_written == 5
    assert writer.adopted == {}
    # Their gateway closes its journal (or dies): now its segments are adopted.
    theirs.close()
    writer._retry_at.clear()  # no need to wait the 2 s between tries here
    assert writer.drain(time.monotonic() + 30)
    assert store.count_traces() == 12
    assert writer.own_written == 5 and writer.adopted_segments == 1
    assert not list(tmp_path.glob(f"{theirs.owner}-*"))  # segment and claim file gone
    mine.close()
    writer.close()
    os.close(claim)
    store.dispose()


def test_a_running_writer_keeps_its_gateways_segments_from_the_others(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.migrate()
    theirs = _journal(tmp_path, 0, 4)
    theirs.close()  # sealed, but their writer still runs (it holds the claim)
    claim = _claimed(tmp_path, theirs.owner)
    other = JournalWriter(store, tmp_path, owner="someone-else")
    assert other.drain(time.monotonic() + 30)
    assert store.count_traces() == 0 and other.adopted == {}
    os.close(claim)
    other.close()
    store.dispose()


def test_two_writers_racing_on_a_dead_gateways_segments_store_each_trace_once(
    store_url: str, tmp_path: Path
) -> None:
    store = Store(store_url)
    store.migrate()
    dead = Journal(tmp_path, segment_bytes=2000)  # several segments
    for i in range(300):
        dead.append(trace_line(normal(i)))
    dead.close()
    writers = [JournalWriter(store, tmp_path, owner=f"w{k}", batch_size=50) for k in range(2)]
    done = [False, False]

    def run(k: int) -> None:
        done[k] = writers[k].drain(time.monotonic() + 60)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(done)
    assert store.count_traces() == 300
    # One of them claimed it and stored all of it; the other stored nothing twice.
    assert sorted(w.adopted_segments > 0 for w in writers) == [False, True]
    assert sum(w.written for w in writers) == 300
    assert not list(tmp_path.glob("*.jsonl"))
    for w in writers:
        w.close()
    store.dispose()
