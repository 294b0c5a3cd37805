"""``wrr``: smooth weighted round robin, as nginx balances its upstreams.

Each model has a current weight. On each request, every eligible model's current weight
grows by its configured weight; the largest wins and drops by the sum of the eligible
weights. With weights a=5, b=1, c=1 the sequence is a a b a c a a: each model gets its
share, spread out rather than in bursts. Models left out by the constraints are skipped
and keep their state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence

from polyroute.errors import NoEligibleModel
from polyroute.routing.base import Candidate, Decision, Router, RouteRequest
from polyroute.routing.options import WrrOptions
from polyroute.routing.registry import ROUTERS


@ROUTERS.register("wrr")
class WeightedRoundRobinRouter(Router):
    """Routes among the models named in ``weights`` (positive numbers), in proportion."""

    kind = "wrr"
    Options = WrrOptions

    def __init__(self, name: str = "wrr", *, weights: Mapping[str, float]) -> None:
        super().__init__(name)
        if not weights:
            raise ValueError("wrr needs weights: {model: weight, ...}")
        for model, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"weight of {model!r} must be a number, got {weight!r}")
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"weight of {model!r} must be > 0, got {weight!r}")
        self.weights = {m: float(w) for m, w in weights.items()}
        #: The models this router chooses among (the gateway offers only these).
        self.models = list(self.weights)
        self._current = dict.fromkeys(self.weights, 0.0)
        self._lock = threading.Lock()

    def route(self, request: RouteRequest, candidates: Sequence[Candidate]) -> Decision:
        names = [c.name for c in candidates if c.name in self.weights]
        if not names:
            raise NoEligibleModel(
                f"router {self.name!r} routes among {', '.join(self.models)}; "
                "none of them can serve this request"
            )
        total = sum(self.weights[n] for n in names)
        with self._lock:
            for n in names:
                self._current[n] += self.weights[n]
            chosen = max(names, key=self._current.__getitem__)  # first of equals wins
            self._current[chosen] -= total
        rest = sorted((n for n in names if n != chosen), key=lambda n: -self.weights[n])
        share = self.weights[chosen] / total
        return Decision(
            model=chosen,
            router=self.name,
            reason=(
                f"weighted round robin: {chosen} has weight {self.weights[chosen]:g} "
                f"({share:.0%} of the {len(names)} eligible models' traffic)"
            ),
            fallbacks=tuple(rest),
        )
