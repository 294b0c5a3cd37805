"""Retention: traces older than ``store.retention_days`` are deleted in the background.

The purge runs at startup and then every ``store.purge_interval_s``, in a worker thread
and in short transactions (see :meth:`~polyroute.store.traces.TraceStore.purge_before`),
so neither the request path nor the recorder waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from polyroute.store.db import Store

log = logging.getLogger(__name__)


class Purger:
    """Deletes old traces periodically; does nothing when ``retention_days`` is None."""

    def __init__(self, store: Store, retention_days: float | None, interval_s: float) -> None:
        self.store = store
        self.retention_days = retention_days
        self.interval_s = interval_s
        self.purged = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.retention_days is not None:
            self._task = asyncio.create_task(self._run(), name="polyroute-retention")

    async def purge(self) -> int:
        """Delete what is older than the retention period now; return how many traces."""
        if self.retention_days is None:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
        try:
            n = await asyncio.to_thread(self.store.purge_before, cutoff, stop=self._stop.is_set)
        except Exception:
            log.exception("could not purge traces older than %s", cutoff.isoformat())
            return 0
        self.purged += n
        if n:
            log.info("purged %d traces older than %s", n, cutoff.isoformat())
        return n

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.purge()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)

    async def aclose(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None
