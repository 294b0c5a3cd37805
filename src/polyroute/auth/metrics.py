"""Spend and requests per key and team on ``/metrics``, with a bounded label set.

Keys are labelled by alias (their id when they have none). Keys are made by the admin, not
by clients, yet a gateway with thousands of them must not make thousands of series: the
first ``MAX_KEYS`` keys seen get their own label, later ones share ``other``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

from polyroute.auth.keys import KeyInfo

MAX_KEYS = 200
OTHER = "other"


class KeyMetrics:
    """Counters per (key, team) in the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "polyroute_key_requests",
            "Chat completion requests per key (alias) and team.",
            ["key", "team"],
            registry=registry,
        )
        self.cost = Counter(
            "polyroute_key_cost_usd",
            "USD charged to each key (alias) and team.",
            ["key", "team"],
            registry=registry,
        )
        # Each key's two counter children, found once: ``labels()`` costs a lock and a
        # lookup a request otherwise.
        self._children: dict[str, tuple[Any, Any]] = {}

    def observe(self, key: KeyInfo, cost_nusd: int) -> None:
        children = self._children.get(key.id)
        if children is None:
            if len(self._children) >= MAX_KEYS:
                labels = (OTHER, OTHER)
            else:
                labels = (key.alias or key.id, key.team_id or "")
            children = (self.requests.labels(*labels), self.cost.labels(*labels))
            if len(self._children) < MAX_KEYS:
                self._children[key.id] = children
        children[0].inc()
        if cost_nusd > 0:
            children[1].inc(cost_nusd / 1e9)
