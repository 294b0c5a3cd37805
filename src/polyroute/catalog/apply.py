"""Filling a config's models from the catalog: prices, context window, capabilities.

A model's capabilities come from the catalog only when the config writes none: what the
catalog lists it has, what the catalog says it lacks goes to ``lacks``, and the rest stays
unknown (routing assumes it, see polyroute.routing.constraints).

Values written in the config always win. Which catalog entry a model takes:

- ``catalog_id`` set: that entry (an id that does not resolve is a :class:`ConfigError`).
  Prices come from its endpoint at the model's provider when the catalog has one there,
  else from the endpoint the id selects (a ``provider/`` prefix pins one).
- no ``catalog_id``: the entry its ``upstream_model`` (or ``name``) resolves to without
  ambiguity. Prices are taken only when the provider is recognised (by its name or base
  URL) and the catalog lists the model there: a model behind an unknown URL may be
  self-hosted, and a hosted price would then be a guess.
- local (``llama_cpp``) models never take hosted prices; unless their config says
  otherwise they cost ``local_prices``, zero money by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from polyroute.catalog.pricing import LOCAL_PRICES
from polyroute.catalog.resolve import AmbiguousModel, Resolution, normalise_provider, resolve
from polyroute.catalog.schema import Catalog, Endpoint, Prices
from polyroute.errors import ConfigError, ModelNotFound

if TYPE_CHECKING:  # annotations only: importing the catalog does not load the config stack
    from polyroute.config import Config, ModelConfig, ProviderConfig

#: API hosts → catalog provider, for providers configured under another name.
PROVIDER_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gemini",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "xai",
    "api.llama.com": "meta_llama",
    "api.groq.com": "groq",
    "api.together.xyz": "together_ai",
    "api.together.ai": "together_ai",
    "api.fireworks.ai": "fireworks_ai",
    "api.cerebras.ai": "cerebras",
    "api.deepinfra.com": "deepinfra",
}
_HOST_SUFFIXES = {
    ".openai.azure.com": "azure",
    "aiplatform.googleapis.com": "vertex_ai",
    ".amazonaws.com": "bedrock",
}

_NATIVE_KINDS = {"anthropic": "anthropic", "gemini": "gemini", "azure": "azure"}

_PRICE_FIELDS = {
    "input_price": "input",
    "output_price": "output",
    "cached_input_price": "cached_input",
    "cache_write_price": "cache_write",
}


def catalog_provider(name: str, config: ProviderConfig, catalog: Catalog) -> str | None:
    """The catalog provider a configured provider is, when it can be told; ``local`` for
    the embedded engine and the engines polyroute runs."""
    if config.api in ("llama_cpp", "engine"):
        return "local"
    key = normalise_provider(name)
    if key in catalog.providers:
        return key
    host = (urlparse(config.base_url).hostname or "").lower() if config.base_url else ""
    if host in PROVIDER_HOSTS:
        return PROVIDER_HOSTS[host]
    by_host = next((p for suffix, p in _HOST_SUFFIXES.items() if host.endswith(suffix)), None)
    # A native provider kind says whose API it is, wherever it is served from.
    return by_host or _NATIVE_KINDS.get(config.api)


def apply_catalog(
    config: Config, catalog: Catalog, *, local_prices: Prices = LOCAL_PRICES
) -> Config:
    """A copy of ``config`` with its models' missing values filled from ``catalog``."""
    models = [
        _apply_one(i, m, config.providers[m.provider], catalog, local_prices)
        for i, m in enumerate(config.models)
    ]
    return config.model_copy(update={"models": models})


def _apply_one(
    i: int, model: ModelConfig, provider: ProviderConfig, catalog: Catalog, local: Prices
) -> ModelConfig:
    host = catalog_provider(model.provider, provider, catalog)
    found: Resolution | None = None
    used: Endpoint | None = None  # the endpoint whose terms this model gets
    if model.catalog_id:
        found = _explicit(i, model, catalog, host)
        used = found.endpoint
    elif host != "local":
        found = _implicit(model, catalog, host)
        if found and found.endpoint is not None and found.endpoint.provider == host:
            used = found.endpoint
    if host == "local":
        used = None
    prices = local if host == "local" else used.prices if used else None

    updates: dict[str, Any] = {}
    if prices is not None:
        for ours, theirs in _PRICE_FIELDS.items():
            updates[ours] = getattr(prices, theirs)
        # Tiers refine the catalog's base prices: never paired with prices written here.
        if prices.tiers and not {"input_price", "output_price"} & model.model_fields_set:
            updates["price_tiers"] = list(prices.tiers)
    if found is not None:
        endpoint_window = used.limits.context_window if used else None
        updates["context_window"] = endpoint_window or found.model.context_window
        updates["capabilities"] = list(found.model.capabilities)
    # A written capabilities list (even an empty one) is the whole list: it is not None.
    written = {f for f in model.model_fields_set if getattr(model, f) is not None}
    updates = {k: v for k, v in updates.items() if k not in written and v is not None}
    if found is not None and found.model.lacks and "capabilities" not in written:
        # What the catalog says a model cannot do adds to what the config says.
        updates["lacks"] = sorted({*model.lacks, *found.model.lacks})
    return model.model_copy(update=updates) if updates else model


def _explicit(i: int, model: ModelConfig, catalog: Catalog, host: str | None) -> Resolution:
    assert model.catalog_id is not None
    catalog_id = model.catalog_id
    try:
        found = resolve(catalog, catalog_id)
    except (ModelNotFound, AmbiguousModel) as e:
        raise ConfigError(
            f"models[{i}] ({model.name}): catalog_id {catalog_id!r} does not name one catalog "
            f"model: {e.message}. Fix: set catalog_id to a model id from `polyroute models`, "
            "or remove catalog_id and write input_price/output_price yourself"
        ) from None
    pinned = "/" in catalog_id and found.endpoint is not None
    if host and host != "local" and not pinned and found.model.endpoints_at(host):
        found = resolve(catalog, catalog_id, provider=host)
    return found


def _implicit(model: ModelConfig, catalog: Catalog, host: str | None) -> Resolution | None:
    for name in dict.fromkeys((model.target, model.name)):
        try:
            found = resolve(catalog, name)
        except (ModelNotFound, AmbiguousModel):
            continue
        if host and found.model.endpoints_at(host):
            return resolve(catalog, name, provider=host)
        return found
    return None
