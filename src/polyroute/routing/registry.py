"""The routers registry: kind name → :class:`~polyroute.routing.base.Router` subclass.

Built-ins (``random``, ``wrr``, ``knn``, ``mlp``, and the online ``ucb1``, ``thompson``,
``linucb``) register here through the same decorator a third party uses; other packages
add theirs through the entry point group ``polyroute.routers``. A config section
``routers: {NAME: {kind: KIND, ...}}`` becomes ``ROUTERS.get(KIND).from_config(NAME, options)``.
"""

from __future__ import annotations

from polyroute.registry import Registry
from polyroute.routing.base import Router

ROUTERS: Registry[type[Router]] = Registry("routers")

# Imported last, for its side effect: each built-in module registers itself in ROUTERS.
import polyroute.routing.online  # noqa: E402
import polyroute.routing.routers  # noqa: E402, F401

__all__ = ["ROUTERS"]
