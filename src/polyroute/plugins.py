"""Everything a third-party provider or router needs, in one place: the plugin contract.

A plugin is a package that registers a class under an entry point::

    [project.entry-points."polyroute.providers"]
    my-api = "my_package:MyProvider"        # a Provider subclass; config: providers.X.api: my-api
    [project.entry-points."polyroute.routers"]
    my-router = "my_package:MyRouter"       # a Router subclass;   config: routers.X.kind: my-router

A class declares the config fields it takes as :class:`Options` subclasses (pydantic models,
each field with ``Field(description=...)``): a provider's ``Options`` (its entry's fields
beyond ``api``, ``base_url``, ``api_key_env``, ...; parsed into ``self.options``) and
``ModelOptions`` (fields of each model entry it serves: ``model.options_as(MyModelOptions,
where)``), a router's ``Options`` (its entry's fields besides ``kind`` and ``models``; the
validated values go to ``from_config``). polyroute checks them when the config is loaded and
refuses a wrong field naming its path, as for its own.

polyroute's own providers and routers register in the same registries (:data:`PROVIDERS`,
:data:`ROUTERS`) by the same names, so a plugin is looked up exactly like a built-in, the
first time its name is asked for. ``docs/plugins.md`` shows a complete provider.

Import from here, not from the modules behind it: these names are the stable surface (a
test pins ``__all__``); the rest of the package may move.
"""

from __future__ import annotations

from polyroute.errors import (
    ConfigError,
    InvalidRequest,
    ModelUnavailable,
    NoEligibleModel,
    NotFound,
    PolyrouteError,
    RateLimited,
    UpstreamError,
    UpstreamIncomplete,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from polyroute.options import NoOptions, Options
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth, Provider, Usage
from polyroute.registry import Registry
from polyroute.routing.base import Candidate, Decision, Router, RouteRequest, check_options
from polyroute.routing.registry import ROUTERS

__all__ = [
    "JSON",
    "PROVIDERS",
    "ROUTERS",
    "Candidate",
    "ConfigError",
    "Decision",
    "InvalidRequest",
    "ModelHealth",
    "ModelUnavailable",
    "NoEligibleModel",
    "NoOptions",
    "NotFound",
    "Options",
    "PolyrouteError",
    "Provider",
    "RateLimited",
    "Registry",
    "RouteRequest",
    "Router",
    "UpstreamError",
    "UpstreamIncomplete",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "Usage",
    "check_options",
]
