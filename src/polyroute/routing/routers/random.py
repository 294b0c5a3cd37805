"""``random``: every eligible candidate equally likely; a baseline, and a way to spread load."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from polyroute.routing.base import Candidate, Decision, Router, RouteRequest
from polyroute.routing.options import RandomOptions
from polyroute.routing.registry import ROUTERS


@ROUTERS.register("random")
class RandomRouter(Router):
    """Uniform choice over the candidates; ``seed`` makes the sequence of choices repeatable."""

    kind = "random"
    Options = RandomOptions

    def __init__(self, name: str = "random", *, seed: int | None = None) -> None:
        super().__init__(name)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def route(self, request: RouteRequest, candidates: Sequence[Candidate]) -> Decision:
        with self._lock:
            order = self._rng.permutation(len(candidates))
        chosen, *rest = (candidates[int(i)].name for i in order)
        return Decision(
            model=chosen,
            router=self.name,
            reason=f"random: one of {len(candidates)} eligible models, each with equal chance",
            fallbacks=tuple(rest),
        )
