"""Convert LiteLLM's ``model_prices_and_context_window.json`` (MIT) into a polyroute catalog.

LiteLLM keys one entry per name a provider accepts (``gpt-4o``, ``gpt-4o-2024-08-06``,
``azure/gpt-4o``, ``us.anthropic.claude-...-v1:0``, ``together_ai/meta-llama/...``). The
importer keeps chat models from the providers in :data:`PROVIDERS`, derives one canonical id
per model (:func:`canonical_id`), and groups entries: one model, one endpoint per provider and
set of terms, the other names as aliases. Prices go from USD per token to USD per million.
Whatever it cannot use it reports with a reason; it never guesses a price.

``scripts/build_catalog.py`` runs it and writes ``catalog/data/catalog.json``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polyroute.catalog.naming import canonical_id, cleaned_name, creator_of, family_of, upstream_id
from polyroute.catalog.schema import (
    ApiStyle,
    Capability,
    Catalog,
    Endpoint,
    Limits,
    Model,
    Prices,
    PriceTier,
    Provenance,
)

SOURCE = "LiteLLM model_prices_and_context_window.json"
SOURCE_URL = "https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json"
LICENCE = "MIT"
#: An endpoint past its announced retirement is kept this long: names people type (DeepSeek's
#: ``deepseek-chat``) outlive the date in LiteLLM's list, and pricing them beats not knowing.
RETIRED_GRACE = dt.timedelta(days=180)

#: LiteLLM provider → (our provider, API style). Others are skipped as not covered.
PROVIDERS: dict[str, tuple[str, ApiStyle]] = {
    "openai": ("openai", "openai"),
    "azure": ("azure", "openai"),
    "azure_ai": ("azure_ai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "gemini": ("gemini", "gemini"),
    "vertex_ai": ("vertex_ai", "vertex"),
    "vertex_ai-language-models": ("vertex_ai", "vertex"),
    "vertex_ai-anthropic_models": ("vertex_ai", "vertex"),
    "vertex_ai-llama_models": ("vertex_ai", "vertex"),
    "vertex_ai-mistral_models": ("vertex_ai", "vertex"),
    "vertex_ai-deepseek_models": ("vertex_ai", "vertex"),
    "vertex_ai-openai_models": ("vertex_ai", "vertex"),
    "mistral": ("mistral", "openai"),
    "deepseek": ("deepseek", "openai"),
    "xai": ("xai", "openai"),
    "meta_llama": ("meta_llama", "openai"),
    "groq": ("groq", "openai"),
    "together_ai": ("together_ai", "openai"),
    "fireworks_ai": ("fireworks_ai", "openai"),
    "cerebras": ("cerebras", "openai"),
    "deepinfra": ("deepinfra", "openai"),
    "bedrock": ("bedrock", "bedrock_invoke"),
    "bedrock_converse": ("bedrock", "bedrock_converse"),
}

#: Creator → its own API; that endpoint is the model's default when its price is known.
FIRST_PARTY = {
    "anthropic": "anthropic",
    "deepseek": "deepseek",
    "google": "gemini",
    "meta": "meta_llama",
    "mistral": "mistral",
    "openai": "openai",
    "xai": "xai",
}
#: After the first-party endpoint, endpoints are listed in this order.
PROVIDER_ORDER = (
    "openai",
    "anthropic",
    "gemini",
    "mistral",
    "deepseek",
    "xai",
    "meta_llama",
    "together_ai",
    "fireworks_ai",
    "groq",
    "cerebras",
    "deepinfra",
    "vertex_ai",
    "bedrock",
    "azure",
    "azure_ai",
)

_CAPABILITY_FLAGS: dict[str, Capability] = {
    "supports_function_calling": "tools",
    "supports_tool_choice": "tools",
    "supports_response_schema": "json_mode",
    "supports_vision": "vision",
    "supports_reasoning": "reasoning",
    "supports_prompt_caching": "prompt_caching",
    "supports_audio_input": "audio_input",
    "supports_audio_output": "audio_output",
    "supports_pdf_input": "pdf_input",
    "supports_video_input": "video_input",
    "supports_web_search": "web_search",
    "supports_computer_use": "computer_use",
}
assert set(_CAPABILITY_FLAGS.values()) <= set(get_args(Capability))
#: Flags whose explicit ``false`` means the model cannot do it. Not supports_response_schema:
#: a model without structured outputs may still answer in JSON mode. Not supports_tool_choice:
#: a model may call tools without honouring a forced choice.
_LACK_FLAGS: dict[str, Capability] = {
    "supports_function_calling": "tools",
    "supports_vision": "vision",
}

# Keys that name no model, or a price that is not per token.
_NOT_MODELS = [
    (re.compile(r"^ft:"), "fine-tuning price template, not a model"),
    (re.compile(r"^together-ai-[\d.]+b"), "size-bucket price, not a model"),
    (re.compile(r"-commitment/"), "provisioned-throughput price (per hour), not per token"),
    (re.compile(r"^bedrock/[a-z0-9*-]+/"), "regional duplicate (the region is a request setting)"),
    (re.compile(r"^azure/[a-z-]+/"), "data-zone price variant of an azure/ entry"),
    (re.compile(r"(^|/)(container|model[-_]router)$|/routers/"), "a tool or router, not a model"),
]


#: LiteLLM's long-prompt prices: ``input_cost_per_token_above_200k_tokens`` and the like.
#: Variants for other service tiers (``..._priority``, ``_batches``, ``_flex``) and cache
#: lifetimes (``_above_1hr``) do not match: polyroute bills the standard tier.
_TIER_KEY = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost)_above_(\d+)k_tokens$"
)
_TIER_FIELD = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
}


class _Entry(BaseModel):
    """The fields of a LiteLLM entry the importer reads; it ignores the rest, but for the
    tiered prices (:data:`_TIER_KEY`), which keep their key and are read by :func:`_tiers`."""

    model_config = ConfigDict(extra="allow")

    litellm_provider: str
    mode: str | None = None
    input_cost_per_token: float | None = Field(None, ge=0)
    output_cost_per_token: float | None = Field(None, ge=0)
    cache_read_input_token_cost: float | None = Field(None, ge=0)
    input_cost_per_token_cache_hit: float | None = Field(None, ge=0)
    cache_creation_input_token_cost: float | None = Field(None, ge=0)
    max_input_tokens: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    deprecation_date: dt.date | None = None
    supports_function_calling: bool | None = None
    supports_tool_choice: bool | None = None
    supports_response_schema: bool | None = None
    supports_vision: bool | None = None
    supports_reasoning: bool | None = None
    supports_prompt_caching: bool | None = None
    supports_audio_input: bool | None = None
    supports_audio_output: bool | None = None
    supports_pdf_input: bool | None = None
    supports_video_input: bool | None = None
    supports_web_search: bool | None = None
    supports_computer_use: bool | None = None


@dataclass
class ImportReport:
    """What the importer made, and what it left out and why."""

    catalog: Catalog
    #: (LiteLLM key, reason) for entries in scope that could not be used.
    rejected: list[tuple[str, str]] = field(default_factory=list)
    #: Reason → count, for entries out of scope (not chat, provider not covered).
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def endpoint_count(self) -> int:
        return sum(len(m.endpoints) for m in self.catalog.models)


@dataclass
class _Item:
    key: str
    provider: str
    upstream_id: str
    endpoint: Endpoint
    capabilities: set[Capability]
    lacks: set[Capability]
    org: str | None


def _per_million(per_token: float | None) -> float | None:
    return None if per_token is None else round(per_token * 1_000_000, 6)


def _tiers(entry: _Entry) -> tuple[PriceTier, ...]:
    """The entry's long-prompt tiers, by ascending threshold (ValidationError if a price is
    not a number >= 0)."""
    found: dict[int, dict[str, float | None]] = {}
    for key, value in (entry.model_extra or {}).items():
        m = _TIER_KEY.match(key)
        if m:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            per_million = _per_million(value) if number else value
            found.setdefault(int(m[2]) * 1000, {})[_TIER_FIELD[m[1]]] = per_million
    return tuple(
        PriceTier.model_validate({"above_input_tokens": n, **prices})
        for n, prices in sorted(found.items())
    )


def _item(key: str, entry: _Entry, provider: str, style: ApiStyle) -> _Item:
    upstream = upstream_id(key)
    cached = entry.cache_read_input_token_cost
    if cached is None:
        cached = entry.input_cost_per_token_cache_hit
    endpoint = Endpoint(
        provider=provider,
        upstream_id=upstream,
        api_style=style,
        prices=Prices(
            input=_per_million(entry.input_cost_per_token),
            output=_per_million(entry.output_cost_per_token),
            cached_input=_per_million(cached),
            cache_write=_per_million(entry.cache_creation_input_token_cost),
            tiers=_tiers(entry),
        ),
        limits=Limits(
            context_window=entry.max_input_tokens,
            max_output_tokens=entry.max_output_tokens,
        ),
        deprecation_date=entry.deprecation_date,
    )
    caps = {cap for flag, cap in _CAPABILITY_FLAGS.items() if getattr(entry, flag)}
    lacks = {cap for flag, cap in _LACK_FLAGS.items() if getattr(entry, flag) is False}
    return _Item(key, provider, upstream, endpoint, caps, lacks, cleaned_name(upstream)[1])


def _snapshot(name: str) -> str | None:
    """The date a dated snapshot's name carries (``gpt-4o-2024-11-20`` → ``20241120``)."""
    m = re.search(r"(20\d\d)-?(\d\d)-?(\d\d)(?!\d)", name)
    return "".join(m.groups()) if m else None


def _name_order(name: str) -> tuple[bool, int, str]:
    """Prefer undated, short names as an endpoint's upstream id."""
    return bool(re.search(r"\d{4}", name)), len(name), name


def _endpoints(items: list[_Item], creator: str | None) -> list[Endpoint]:
    """Merge entries with one provider and the same terms into one endpoint; order them."""
    groups: dict[tuple[str, str, str | None], list[_Item]] = defaultdict(list)
    for it in items:
        terms = it.endpoint.model_dump_json(exclude={"upstream_id", "aliases"})
        # Two dated snapshots are two models at the upstream, even at one price: a name
        # must never select another snapshot than the one it names.
        groups[(it.provider, terms, _snapshot(it.upstream_id))].append(it)
    endpoints = []
    for group in groups.values():
        names = sorted({it.upstream_id for it in group}, key=_name_order)
        endpoints.append(
            group[0].endpoint.model_copy(update={"upstream_id": names[0], "aliases": names[1:]})
        )
    first_party = FIRST_PARTY.get(creator or "")

    def order(e: Endpoint) -> tuple[bool, bool, int, tuple[bool, int, str]]:
        rank = PROVIDER_ORDER.index(e.provider) if e.provider in PROVIDER_ORDER else 99
        return (
            not e.prices.known,
            e.provider != first_party,
            rank,
            _name_order(e.upstream_id),
        )

    return sorted(endpoints, key=order)


def _model(model_id: str, items: list[_Item]) -> Model:
    creator = creator_of(model_id, (it.org for it in items))
    endpoints = _endpoints(items, creator)
    endpoint_names = {n.lower() for e in endpoints for n in e.names}
    aliases = {cleaned_name(it.upstream_id)[0] for it in items} - endpoint_names - {model_id}
    capabilities: set[Capability] = set().union(*(it.capabilities for it in items))
    # Lacking only where no entry of the model says it can (any host's "yes" counts).
    lacks: set[Capability] = set().union(*(it.lacks for it in items)) - capabilities

    def first(attr: str) -> int | None:
        values = (getattr(e.limits, attr) for e in endpoints)
        return next((v for v in values if v is not None), None)

    return Model(
        id=model_id,
        family=family_of(model_id),
        creator=creator,
        aliases=sorted(aliases),
        context_window=first("context_window"),
        max_output_tokens=first("max_output_tokens"),
        capabilities=sorted(capabilities),
        lacks=sorted(lacks),
        endpoints=endpoints,
    )


def _problem(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']} (got {e.get('input')!r})"


def convert(
    raw: Mapping[str, Any], *, version: str | None, today: dt.date | None = None
) -> ImportReport:
    """Build a catalog from LiteLLM's JSON (already parsed); ``version`` is LiteLLM's."""
    today = today or dt.date.today()
    report = ImportReport(Catalog())
    by_model: dict[str, list[_Item]] = defaultdict(list)
    seen: dict[tuple[str, str], _Item] = {}
    for key, value in raw.items():
        if key == "sample_spec":
            continue
        if not isinstance(value, dict):
            report.rejected.append((key, "entry is not an object"))
            continue
        if value.get("mode") != "chat":
            report.skipped[f"mode {value.get('mode')!r} is not chat"] += 1
            continue
        if value.get("litellm_provider") not in PROVIDERS:
            report.skipped["provider not covered"] += 1
            continue
        reason = next((why for pattern, why in _NOT_MODELS if pattern.search(key)), None)
        if reason:
            report.rejected.append((key, reason))
            continue
        try:
            entry = _Entry.model_validate(value)
            item = _item(key, entry, *PROVIDERS[entry.litellm_provider])
        except ValidationError as e:
            report.rejected.append((key, _problem(e)))
            continue
        if entry.input_cost_per_token is None and entry.max_input_tokens is None:
            report.rejected.append((key, "neither a price nor a context window"))
            continue
        if entry.deprecation_date is not None and entry.deprecation_date < today - RETIRED_GRACE:
            report.rejected.append((key, f"retired on {entry.deprecation_date}"))
            continue
        provider = item.provider
        model_id = canonical_id(item.upstream_id)
        if not re.fullmatch(r"[a-z0-9][a-z0-9._:/@+-]*", model_id):
            report.rejected.append((key, f"cannot derive a model id (got {model_id!r})"))
            continue
        kept = seen.setdefault((provider, item.upstream_id), item)
        if kept is not item:
            _keep_one(report, by_model, seen, kept, item)
            continue
        by_model[model_id].append(item)

    models = [_model(mid, items) for mid, items in sorted(by_model.items())]
    models = _drop_clashing_aliases(models)
    provenance = Provenance(
        source=SOURCE, version=version, licence=LICENCE, url=SOURCE_URL, generated_at=today
    )
    report.catalog = Catalog(sources=[provenance], models=models)
    return report


def _keep_one(
    report: ImportReport,
    by_model: dict[str, list[_Item]],
    seen: dict[tuple[str, str], _Item],
    kept: _Item,
    new: _Item,
) -> None:
    """Two keys name one upstream id at one provider (``gemini-x`` and ``gemini/gemini-x``).

    Same terms: one endpoint. Different terms: the key with the provider's prefix wins, as
    LiteLLM's namespaced entries are the maintained ones; the other is reported."""
    if kept.endpoint == new.endpoint:
        return
    if new.key != new.upstream_id and kept.key == kept.upstream_id:
        items = by_model[canonical_id(kept.upstream_id)]
        items[items.index(kept)] = new
        seen[(new.provider, new.upstream_id)] = new
        kept, new = new, kept
    report.rejected.append((new.key, f"same name as {kept.key!r} with other prices or limits"))


def _drop_clashing_aliases(models: list[Model]) -> list[Model]:
    """A model-level alias that is another model's id or alias would make it ambiguous."""
    owners: dict[str, set[str]] = defaultdict(set)
    for m in models:
        for name in (m.id, *m.aliases):
            owners[name].add(m.id)
    out = []
    for m in models:
        keep = [a for a in m.aliases if len(owners[a]) == 1]
        out.append(m if keep == m.aliases else m.model_copy(update={"aliases": keep}))
    return out
