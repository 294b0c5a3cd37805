"""The online-router interface: route, then learn from the quality feedback that follows.

Life of one request::

    decision = router.route(request, candidates)     # index per model − λ·cost, best wins
    context = router.context(request)                 # keep it (or recompute it) for feedback
    ... the chosen model answers; later, feedback scores it ...
    router.update(decision.model, reward, context)    # reward in [0, 1]

Every router keeps its learned statistics behind one lock, because feedback arrives on
other requests (threads) than the ones routing. :meth:`OnlineRouter.state_dict` is plain
JSON data that the store keeps across restarts; it holds what was *learned*, not the
configuration (λ, exploration), so a restart with a new λ keeps what it knew.

What is learned is a sum over feedback (counts, reward sums, LinUCB's Σxxᵀ and Σrx), so the
states of several gateway processes merge by adding what each learned:
:meth:`OnlineRouter.shifted` computes ``base + (plus − minus)``, and :meth:`OnlineRouter.rebase`
makes a router's state the merged one plus whatever it learned meanwhile
(:mod:`polyroute.gateway.learning` saves and reloads so).
"""

from __future__ import annotations

import math
import threading
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from polyroute.errors import UnknownPrice
from polyroute.routing.base import Candidate, Decision, Router, RouteRequest
from polyroute.routing.options import OnlineOptions
from polyroute.routing.pricing import prompt_cost
from polyroute.routing.tradeoff import FloatArray, select

#: Bumped when a router's state layout changes; older states are refused, never guessed at.
STATE_VERSION = 1


def candidate_cost(candidate: Candidate, request: RouteRequest) -> float | None:
    """Estimated USD for ``request`` on ``candidate`` (prices per 1M tokens); None if unpriced."""
    if candidate.input_price is None or candidate.output_price is None:
        return None
    price = (candidate.input_price, candidate.output_price)
    return prompt_cost(request.input_tokens, price, request.output_tokens)


def arms_of(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """A state's ``arms`` (model → statistics), or ValueError."""
    arms = state.get("arms")
    if not isinstance(arms, Mapping) or not all(isinstance(a, Mapping) for a in arms.values()):
        raise ValueError("state 'arms' must be an object of objects")
    return arms


def shift_counts(
    base: Mapping[str, Any], plus: Mapping[str, Any], minus: Mapping[str, Any], keys: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``base + (plus − minus)`` of arms whose statistics are plain numbers under ``keys``."""
    arms = [arms_of(s) for s in (base, plus, minus)]
    out: dict[str, dict[str, float]] = {}
    for model in sorted(set().union(*arms)):
        out[model] = {
            k: arms[0].get(model, {}).get(k, 0)
            + arms[1].get(model, {}).get(k, 0)
            - arms[2].get(model, {}).get(k, 0)
            for k in keys
        }
    return out


def check_reward(reward: float) -> float:
    """``reward`` as a float in [0, 1], or ValueError."""
    r = float(reward)
    if not (math.isfinite(r) and 0.0 <= r <= 1.0):
        raise ValueError(f"reward must be a number in [0, 1], got {reward!r}")
    return r


@dataclass(frozen=True, slots=True)
class ArmScores:
    """What a router computed for each candidate, in the candidates' order."""

    #: The value the router ranks by before the cost term (UCB, sampled mean, upper bound);
    #: +inf for an arm the router must try first.
    index: FloatArray
    #: Its current estimate of the arm's quality (the mean, without exploration).
    estimate: FloatArray
    #: Feedback received per arm.
    plays: Sequence[int]


class OnlineRouter(Router):
    """A router that learns from feedback: maximises index − λ·cost, then is told the quality.

    ``lam`` is the cost/quality knob of :mod:`polyroute.routing.tradeoff` (quality points per
    USD of one request). With ``lam > 0`` an unpriced candidate is skipped, never costed at
    $0; if none has a price, :class:`~polyroute.errors.UnknownPrice`.
    """

    kind: ClassVar[str]
    Options = OnlineOptions
    #: Words for the index in reasons ("UCB", "sampled mean", ...).
    index_name: ClassVar[str] = "index"

    def __init__(self, name: str, *, lam: float = 0.0) -> None:
        super().__init__(name)
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        self.lam = float(lam)
        self._lock = threading.Lock()

    # -- the public surface ---------------------------------------------------------------

    def context(self, request: RouteRequest) -> Any:
        """The features :meth:`update` needs for this request (None for non-contextual ones);
        opaque to callers, who keep it and give it back."""
        return None

    def route(self, request: RouteRequest, candidates: Sequence[Candidate]) -> Decision:
        return self.route_with_context(request, candidates, self.context(request))

    def route_with_context(
        self, request: RouteRequest, candidates: Sequence[Candidate], context: Any
    ) -> Decision:
        """:meth:`route` with the context already computed (by :meth:`context`)."""
        if not candidates:
            raise ValueError("route() needs at least one candidate")
        estimates = {c.name: candidate_cost(c, request) for c in candidates}
        known = {n: usd for n, usd in estimates.items() if usd is not None}
        # As the learned routers do: with λ > 0 an unpriced model cannot be weighed, so it
        # is skipped (and said so); with λ = 0 it competes on quality and loses ties.
        names = [c.name for c in candidates if self.lam == 0 or c.name in known]
        if not names:
            raise UnknownPrice(
                f"router {self.name!r} weighs cost (lam={self.lam:g}) but no eligible model "
                f"has a price: {', '.join(estimates)}; set input_price and output_price"
            )
        features = self._featurize(names, context)
        with self._lock:
            arms = self._scores(names, features)
        top = max(known.values(), default=0.0) + 1.0
        cost = np.array([known.get(n, top) for n in names])
        pick = int(select(arms.index[None, :], cost[None, :], self.lam)[0])
        utility = arms.index - self.lam * cost
        order = sorted(range(len(names)), key=lambda i: (-utility[i], cost[i], i))
        reason = self._reason(names[pick], pick, arms, known.get(names[pick]))
        skipped = [n for n in estimates if n not in known and self.lam > 0]
        if skipped:
            reason += f"; skipped for want of a price: {', '.join(skipped)}"
        return Decision(
            model=names[pick],
            router=self.name,
            scores={n: float(v) for n, v in zip(names, arms.index, strict=True) if np.isfinite(v)},
            costs=known,
            reason=reason,
            fallbacks=tuple(names[i] for i in order if i != pick),
        )

    def update(self, model: str, reward: float, context: Any = None) -> None:
        """Learn that ``model`` earned ``reward`` (quality in [0, 1]) on a request."""
        r = check_reward(reward)
        features = self._featurize([model], context)
        with self._lock:
            self._update(model, r, features)

    def state_dict(self) -> dict[str, Any]:
        """What this router has learned, as JSON-serialisable data."""
        with self._lock:
            return {"kind": self.kind, "version": STATE_VERSION, **self._state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace what this router has learned with ``state`` (from :meth:`state_dict`)."""
        if state.get("kind") != self.kind:
            raise ValueError(f"state is for a {state.get('kind')!r} router, not {self.kind!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"state version {state.get('version')!r} is not {STATE_VERSION}: "
                "it was saved by another polyroute version; start this router afresh"
            )
        with self._lock:
            self._load(state)

    def shifted(
        self, base: Mapping[str, Any], plus: Mapping[str, Any], minus: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The state ``base + (plus − minus)``: what ``base`` holds, with what was learned
        between ``minus`` and ``plus`` (states of this router) added.

        ``base`` of another kind, version or settings is a ValueError (it cannot be added to).
        """
        for state in (base, plus, minus):
            if state.get("kind") != self.kind or state.get("version") != STATE_VERSION:
                raise ValueError(
                    f"cannot add a {state.get('kind')!r} state (version {state.get('version')!r})"
                    f" to a {self.kind!r} router's (version {STATE_VERSION})"
                )
        return {"kind": self.kind, "version": STATE_VERSION, **self._shift(base, plus, minus)}

    def rebase(self, merged: Mapping[str, Any], since: Mapping[str, Any]) -> None:
        """Make this router's state ``merged`` plus what it learned after ``since`` (a
        :meth:`state_dict` taken earlier), atomically with respect to :meth:`update`."""
        with self._lock:
            current = {"kind": self.kind, "version": STATE_VERSION, **self._state()}
            self._load(self.shifted(merged, current, since))

    # -- what each router provides ---------------------------------------------------------

    def _featurize(self, names: Sequence[str], context: Any) -> Any:
        """Per-request work that needs no learned state, done outside the lock."""
        return context

    # The methods below are called with the lock held; ``features`` is from _featurize.

    @abstractmethod
    def _scores(self, names: Sequence[str], features: Any) -> ArmScores: ...

    @abstractmethod
    def _update(self, model: str, reward: float, features: Any) -> None: ...

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load(self, state: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def _shift(
        self, base: Mapping[str, Any], plus: Mapping[str, Any], minus: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``base + (plus − minus)``, arm by arm (an arm a state lacks has learned nothing)."""

    # -- helpers --------------------------------------------------------------------------

    def _reason(self, model: str, i: int, arms: ArmScores, cost: float | None) -> str:
        if not np.isfinite(arms.index[i]):
            return f"{self.kind}: exploring {model}, which has no feedback yet"
        term = f" − {self.lam:g}×${cost:.3g}" if self.lam > 0 and cost is not None else ""
        return (
            f"{self.kind}: {model} has the best {self.index_name}{term} "
            f"({arms.index[i]:.3f}; estimate {arms.estimate[i]:.3f} from {arms.plays[i]} "
            "feedback)"
        )
