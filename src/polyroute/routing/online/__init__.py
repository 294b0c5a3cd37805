"""Routers that learn from feedback as it arrives: UCB1, Thompson sampling and LinUCB.

All of them maximise (their index of quality) − λ·cost, the knob of
:mod:`polyroute.routing.tradeoff`, learn from :meth:`OnlineRouter.update`, and keep what
they learned in :meth:`OnlineRouter.state_dict` (plain JSON data, kept by the store).
Importing this package registers them in :data:`polyroute.routing.registry.ROUTERS` as
``ucb1``, ``thompson`` and ``linucb``.
"""

from polyroute.routing.online.base import OnlineRouter, candidate_cost
from polyroute.routing.online.linucb import LinUCBRouter, learned_prior
from polyroute.routing.online.thompson import ThompsonRouter
from polyroute.routing.online.ucb import UCB1Router

__all__ = [
    "LinUCBRouter",
    "OnlineRouter",
    "ThompsonRouter",
    "UCB1Router",
    "candidate_cost",
    "learned_prior",
]
