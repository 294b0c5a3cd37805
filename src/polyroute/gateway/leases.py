"""Budget leases: a slice of a budget reserved in the store once, then spent request by request.

A reservation per request costs a store transaction per request (and a hand-off to a worker
thread): most of what keys and budgets added to the hot path. Instead, while a budget has
plenty left, a gateway process leases a slice of it, enough for ``LEASE_REQUESTS`` worst
cases of the request that asked, with the same conditional statement a reservation uses
(:meth:`~polyroute.store.ledger.Ledger.lease`), and reserves each request's worst case from
that slice in memory. The slice is part of the subject's ``reserved_nusd`` in the store, so
the sum of every replica's leases and reservations never passes the budget: still exact.

- A request's real cost moves from the lease to ``spent`` at settlement (written with the
  other settlements); a failed request gives its reservation back to the lease (to the
  store once the lease was refused: see below).
- A lease is granted only while ``HEADROOM`` times its size is left unreserved, so no replica
  holds more than a fraction of what is left. Once a budget is too low for that, a refused
  lease sends this process's requests to per-request reservations for ``RETRY_S``, and its
  unused slice goes back to the store first: near the end of a budget every request is
  decided by the store against everything left, as without leases.
- An unused slice goes back after ``IDLE_S`` without a request, and when the gateway stops.

What a replica holds unused may refuse another replica's request early (as any in-flight
reservation may), by at most one slice, until it is used or given back. A replica killed
with ``kill -9`` keeps its slice reserved, as it keeps its in-flight reservations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from polyroute.store.ledger import Charge, Ledger

log = logging.getLogger(__name__)

#: A lease covers this many worst cases of the request that asked for it (times its scale).
LEASE_REQUESTS = 64
#: Leases grow while they last less than a second, up to this many times LEASE_REQUESTS.
MAX_SCALE = 16
#: A lease is granted only while this many of it would still be left unreserved.
HEADROOM = 8
#: A lease unused this long goes back to the store.
IDLE_S = 1.0
#: After a lease is refused (the budget is low), requests reserve one by one this long.
RETRY_S = 1.0


@dataclass(slots=True)
class _Lease:
    held: int = 0  # reserved in the store for this process
    in_use: int = 0  # of which, reserved for requests in flight
    used_at: float = 0.0
    granted_at: float = 0.0
    scale: int = 1
    refused_until: float = 0.0

    @property
    def free(self) -> int:
        return self.held - self.in_use


#: Where a lease's settlements go: (subject, reservation to drop, cost to add to spent).
Credit = Callable[[Charge, int, int], None]


class Leases:
    """This process's leases, one per budgeted subject (see the module docstring)."""

    def __init__(self, ledger: Ledger, credit: Credit) -> None:
        self.ledger = ledger
        self.credit = credit
        self._leases: dict[Charge, _Lease] = {}
        self._asking: dict[Charge, asyncio.Task[bool]] = {}

    def __bool__(self) -> bool:
        return bool(self._leases)

    def take(self, charges: Sequence[Charge], amount: int) -> bool:
        """Reserve ``amount`` from the lease of every subject, or from none; no await."""
        leases = []
        for c in charges:
            lease = self._leases.get(c)
            if lease is None or lease.free < amount:
                return False
            leases.append(lease)
        now = time.monotonic()
        for lease in leases:
            lease.in_use += amount
            lease.used_at = now
        return True

    async def extend(self, charges: Sequence[Charge], amount: int) -> bool:
        """Lease more for each subject that has no room for ``amount``; False when the store
        refused one (the budget is low: reserve per request) or was asked in vain lately."""
        now = time.monotonic()
        short = [
            c for c in charges if (lease := self._leases.get(c)) is None or lease.free < amount
        ]
        if any(c in self._leases and self._leases[c].refused_until > now for c in short):
            return False
        for c in short:
            task = self._asking.get(c)
            if task is None:
                # Its own task: a request cancelled meanwhile must not lose a granted lease.
                task = asyncio.get_running_loop().create_task(self._ask(c, amount))
                self._asking[c] = task
            if not await asyncio.shield(task):
                return False
        return True

    async def _ask(self, charge: Charge, amount: int) -> bool:
        lease = self._leases.setdefault(charge, _Lease())
        try:
            now = time.monotonic()
            if lease.granted_at and now - lease.granted_at < 1.0:
                lease.scale = min(MAX_SCALE, lease.scale * 2)
            size = amount * LEASE_REQUESTS * lease.scale
            try:
                granted = await asyncio.to_thread(self.ledger.lease, charge, size, size * HEADROOM)
            except Exception:
                log.exception("leasing budget for %s %s failed", charge.table.name, charge.id)
                granted = False
            now = time.monotonic()
            if granted:
                lease.held += size
                lease.granted_at = lease.used_at = now
                return True
            lease.refused_until = now + RETRY_S
            lease.scale = 1
            free = lease.free
            if free > 0:
                # Near the end of the budget the store decides each request against all that
                # is left: what this process holds unused goes back first.
                lease.held -= free
                try:
                    await asyncio.to_thread(self.ledger.unreserve, charge, free)
                except Exception:
                    log.exception(
                        "giving back a lease of %s %s failed", charge.table.name, charge.id
                    )
                    self.credit(charge, free, 0)  # the settlement flush tries again
            return False
        finally:
            del self._asking[charge]

    def settle(self, charges: Sequence[Charge], reserved: int, cost: int) -> None:
        """A request served from the leases finished: its cost (up to its reservation) moves
        from the lease to ``spent``; the rest of its reservation is free again."""
        now = time.monotonic()
        for c in charges:
            lease = self._leases.get(c)
            drop = min(cost, reserved)
            if lease is not None:
                if lease.refused_until > now:
                    # The budget is low: what the request did not spend goes back to the
                    # store, not to the lease, so other requests' reservations can use it.
                    drop = reserved
                lease.in_use = max(0, lease.in_use - reserved)
                lease.held = max(0, lease.held - drop)
            if cost or drop:
                # A cost past the reservation is charged all the same (the upstream billed it).
                self.credit(c, drop, cost)

    def give_back_idle(self, now: float | None = None, idle_s: float = IDLE_S) -> None:
        """Queue the unused part of every lease idle for ``idle_s`` back to the store."""
        now = time.monotonic() if now is None else now
        for c, lease in list(self._leases.items()):
            if c in self._asking or now - lease.used_at < idle_s:
                continue
            if lease.free > 0:
                self.credit(c, lease.free, 0)
                lease.held = lease.in_use
            if lease.held == 0 and lease.refused_until <= now:
                del self._leases[c]

    def give_back_all(self) -> None:
        """The gateway stops: every unused slice goes back (with the last settlements)."""
        self.give_back_idle(now=float("inf"), idle_s=0.0)
