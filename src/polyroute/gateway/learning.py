"""Online routers in the gateway: remembering recent traces, learning, keeping the state.

Every finished request leaves a small :class:`RecentTrace` in a bounded in-memory map, so
that feedback can find its router, answering model and routing context without reading
the store, even before the recorder has written the trace. :class:`OnlineLearning` owns
the online routers' state: loaded from ``router_state`` at startup, saved in the
background when it changed (at most every ``feedback.save_interval_s``) and at shutdown.
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
        self._dirty: set[str] = set()
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
        """Write the state of the routers that learned since the last save (off the loop)."""
        async with self._saving:
            names, self._dirty = self._dirty, set()
            if not names:
                return
            routers = [(n, self.routers[n]) for n in sorted(names)]

            def write() -> None:
                self.store.save_router_states({n: (r.kind, r.state_dict()) for n, r in routers})

            try:
                await asyncio.to_thread(write)
                self.saves += 1
            except Exception:
                self._dirty |= names  # try again next time
                log.exception("could not save the state of routers %s", ", ".join(sorted(names)))

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
