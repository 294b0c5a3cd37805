"""``GET /health``: the models' readiness, checked upstream at most every few seconds.

Each check asks every upstream for its ``/models``: a load balancer polling ``/health`` once a
second per gateway must not turn into that many calls per upstream. Answers are cached for
``ttl_s``, and callers that arrive while a check runs share it. ``/health/live`` checks
nothing: it says the process serves.
"""

from __future__ import annotations

import asyncio
import time

from polyroute.providers.base import ModelHealth
from polyroute.providers.pool import ProviderPool


class HealthCache:
    """The pool's last health check, reused for ``ttl_s`` seconds."""

    def __init__(self, pool: ProviderPool, ttl_s: float = 5.0) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.checks = 0
        self._value: dict[str, ModelHealth] | None = None
        self._at = 0.0
        self._running: asyncio.Task[dict[str, ModelHealth]] | None = None

    async def get(self) -> dict[str, ModelHealth]:
        if self._value is not None and time.monotonic() - self._at < self.ttl_s:
            return self._value
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._check())
        # shield: a caller that goes away does not cancel the check the others wait for.
        return await asyncio.shield(self._running)

    async def _check(self) -> dict[str, ModelHealth]:
        try:
            self.checks += 1
            value = await self.pool.health()
            self._value, self._at = value, time.monotonic()
            return value
        finally:
            self._running = None
