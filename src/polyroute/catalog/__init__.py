"""The model hub: which models exist, who serves them, at what price, under which names.

Load it with :func:`load_catalog` (cached for the process), resolve any spelling of a model
with :func:`resolve`, price a request with :func:`cost_usd`, and fill a config's models
from it with :func:`apply_catalog`. The bundled data is generated from LiteLLM's price list
by ``scripts/build_catalog.py``; see ``docs/catalog.md``.
"""

from __future__ import annotations

from polyroute.catalog.apply import apply_catalog
from polyroute.catalog.load import (
    CatalogError,
    bundled_catalog,
    load_catalog,
    merge,
    parse_catalog,
    read_catalog_file,
)
from polyroute.catalog.pricing import LOCAL_PRICES, cost_usd, prices_of, require_cost_usd
from polyroute.catalog.resolve import AmbiguousModel, Resolution, resolve, suggestions
from polyroute.catalog.schema import (
    ApiStyle,
    Capability,
    Catalog,
    Endpoint,
    Limits,
    Model,
    Prices,
    Provenance,
)

__all__ = [
    "LOCAL_PRICES",
    "AmbiguousModel",
    "ApiStyle",
    "Capability",
    "Catalog",
    "CatalogError",
    "Endpoint",
    "Limits",
    "Model",
    "Prices",
    "Provenance",
    "Resolution",
    "apply_catalog",
    "bundled_catalog",
    "cost_usd",
    "load_catalog",
    "merge",
    "parse_catalog",
    "prices_of",
    "read_catalog_file",
    "require_cost_usd",
    "resolve",
    "suggestions",
]
