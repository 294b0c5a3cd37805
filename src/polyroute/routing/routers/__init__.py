"""The built-in routers, one module per family; importing this package registers them."""

from __future__ import annotations

from polyroute.routing.routers import knn, mf, mlp, random, wrr
from polyroute.routing.routers.learned import LearnedRouter

__all__ = ["LearnedRouter", "knn", "mf", "mlp", "random", "wrr"]
