"""Online routers in the gateway: remembering recent traces, learning, keeping the state.

Every finished request leaves a small :class:`RecentTrace` in a bounded in-memory map, so
that feedback can find its router, answering model and routing context without reading
the store, even before the recorder has written the trace. :class:`OnlineLearning` owns
the online routers' state: loaded from ``router_state`` at startup, synced with it in the
background every ``feedback.save_interval_s`` and at shutdown.

Several gateway processes (``serve --workers N``, replicas on one database) teach the same
routers, so a sync never overwrites the saved state: it adds what this process learned
since its last sync (its state then, ``base``, subtracted from its state now) to the row as
it is, in one locked transaction, and takes the sum, with whatever it learned meanwhile, as
its own. A process with nothing new just takes the saved state: every process sees every
other's feedback within one interval, and each feedback counts once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyroute.routing.base import RouteRequest
from polyroute.store.db import Store

if TYPE_CHECKING:  # imported only where routers are configured: numpy and friends are slow
    from polyroute.routing.online import OnlineRouter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecentTrace:
    """What feedback needs of a recent request (kept in memory, never stored)."""

    router: str | None
    model: str | None
    status: int
    #: The online router's context for this request (LinUCB: the prompt embedding).
    context: Any = None
    #: Set once feedback has taught the router: only the first feedback on a trace teaches.
    taught: bool = False


class RecentTraces:
    """The last ``capacity`` traces by id, oldest evicted first. Event-loop use only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._traces: OrderedDict[str, RecentTrace] = OrderedDict()

    def add(self, trace_id: str, trace: RecentTrace) -> None:
        self._traces[trace_id] = trace
        if len(self._traces) > self.capacity:
            self._traces.popitem(last=False)

    def get(self, trace_id: str) -> RecentTrace | None:
        return self._traces.get(trace_id)

    def __len__(self) -> int:
        return len(self._traces)


def is_contextual(router: OnlineRouter) -> bool:
    """Whether ``router`` needs the request's context to learn (it overrides ``context``)."""
    from polyroute.routing.online import OnlineRouter

    return type(router).context is not OnlineRouter.context


class OnlineLearning:
    """The online routers of one gateway, their updates and their persisted state."""

    def __init__(
        self, routers: Mapping[str, OnlineRouter], store: Store, *, save_interval_s: float
    ) -> None:
        self.routers = dict(routers)
        self.store = store
        self.save_interval_s = save_interval_s
        self.updates = 0
        self.saves = 0
        self.reloads = 0
        self._dirty: set[str] = set()
        #: Each router's state as of its last sync: what the store had, this process's
        #: learning included. What it learned since is its state now minus this.
        self._base: dict[str, dict[str, Any]] = {}
        self._unusable: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        # One save at a time, so that an older state never overwrites a newer one.
        self._saving = asyncio.Lock()

    def load(self) -> list[str]:
        """Restore each router's saved state (blocking); return the names restored.

        A state saved under other settings, or by another kind of router under the same
        name, is not loaded: the router starts afresh and the reason is logged.
        """
        if not self.routers:
            return []
        saved = self.store.load_router_states()
        restored = []
        for name, router in self.routers.items():
            if name not in saved:
                continue
            kind, state = saved[name]
            try:
                router.load_state_dict(state)
            except ValueError as e:
                log.warning("router %r (%s) starts afresh: its saved state is unusable: %s",
                            name, kind, e)  # fmt: skip
                continue
            restored.append(name)
        self._base = {name: router.state_dict() for name, router in self.routers.items()}
        return restored

    def start(self) -> None:
        if self.routers:
            self._task = asyncio.create_task(self._save_periodically(), name="polyroute-learning")

    async def teach(
        self, name: str, model: str, reward: float, context: Any, request: RouteRequest | None
    ) -> None:
        """Tell router ``name`` that ``model`` earned ``reward``.

        ``context`` is the one kept at routing time; when it is gone (None) and the router
        needs one, it is recomputed from ``request`` (its stored text). Contextual routers
        do CPU work (embedding, linear algebra): that runs in a worker thread.
        """
        router = self.routers[name]
        if not is_contextual(router):
            router.update(model, reward, None)
        else:

            def learn() -> None:
                ctx = context
                if ctx is None:
                    assert request is not None
                    ctx = router.context(request)
                router.update(model, reward, ctx)

            await asyncio.to_thread(learn)
        self.updates += 1
        self._dirty.add(name)

    async def save(self) -> None:
        """Sync every router with the store (off the loop): add what each learned since its
        last sync to the saved state, and take the saved state (with every other process's
        learning) as its own."""
        if not self.routers:
            return
        async with self._saving:
            dirty, self._dirty = self._dirty, set()
            try:
                await asyncio.to_thread(self._sync, dirty)
            except Exception:
                self._dirty |= dirty  # try again next time
                log.exception("could not save the state of routers %s", ", ".join(sorted(dirty)))

    def _sync(self, dirty: set[str]) -> None:
        taken = {n: r.state_dict() for n, r in self.routers.items()}  # what is added now
        written: set[str] = set()

        def change(
            name: str, saved: tuple[str, dict[str, Any]] | None
        ) -> tuple[str, dict[str, Any]] | None:
            router, now = self.routers[name], taken[name]
            # Told by the state, not only by the flag: feedback may land between the flag's
            # reset and the snapshot, and what the snapshot holds must be added now.
            if name not in dirty and now.get("arms") == self._base[name].get("arms"):
                return None
            written.add(name)
            if saved is None:
                return router.kind, now
            try:
                return router.kind, router.shifted(saved[1], now, self._base[name])
            except ValueError as e:  # another kind or settings: this process's state wins
                log.warning("router %r: the saved state is replaced: %s", name, e)
                return router.kind, now

        after = self.store.update_router_states(sorted(self.routers), change)
        if written:
            self.saves += 1
        for name, router in self.routers.items():
            if name not in after:
                continue
            merged = after[name][1]
            try:
                router.rebase(merged, taken[name])
            except ValueError as e:
                if name not in self._unusable:  # said once, not every interval
                    self._unusable.add(name)
                    log.warning("router %r keeps its own state: the saved one is unusable: %s",
                                name, e)  # fmt: skip
                continue
            self._unusable.discard(name)
            self._base[name] = merged
            self.reloads += 1

    async def _save_periodically(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.save_interval_s)
            except TimeoutError:
                await self.save()

    async def aclose(self) -> None:
        """Stop the periodic save and save what changed since the last one."""
        if self._task is not None:
            self._stop.set()
            await self._task  # lets a save in progress finish
            self._task = None
        await self.save()
