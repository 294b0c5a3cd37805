"""The web dashboard at ``/ui``: traffic, cost, latency, model mix, feedback, leaderboards
and a trace explorer, read from the store (see :mod:`polyroute.dashboard.routes`)."""

from polyroute.dashboard.routes import Dashboard

__all__ = ["Dashboard"]
