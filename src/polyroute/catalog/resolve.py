"""Name resolution: any spelling of a model → its canonical model and one endpoint.

- A canonical id or a model alias (``gpt-4o``) selects the model's default endpoint (its
  first: the creator's own API when its price is known).
- A name one provider serves it under (``gpt-4o-2024-08-06``,
  ``anthropic.claude-sonnet-4-5-20250929-v1:0``) selects that endpoint.
- A provider prefix (``azure/gpt-4o``, ``openai/gpt-4o-2024-08-06``) selects the model's
  endpoint at that provider, whatever spelling follows the prefix.

Matching ignores case. A name two models answer to raises :class:`AmbiguousModel` listing
them; a name nothing answers to raises :class:`polyroute.errors.ModelNotFound` with
suggestions.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass

from polyroute.catalog.schema import Catalog, Endpoint, Model
from polyroute.errors import ModelNotFound, PolyrouteError

#: Other spellings of provider names, as prefixes and in configs.
PROVIDER_ALIASES = {
    "azure_openai": "azure",
    "bedrock_converse": "bedrock",
    "fireworks": "fireworks_ai",
    "google": "gemini",
    "meta": "meta_llama",
    "together": "together_ai",
    "vertex": "vertex_ai",
}


class AmbiguousModel(PolyrouteError):
    """A name more than one catalog model answers to; the message lists the candidates."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "ambiguous_model"

    def __init__(self, name: str, candidates: list[str]) -> None:
        listed = ", ".join(candidates)
        super().__init__(
            f"model name {name!r} is ambiguous: it matches {listed}; use one of these ids, "
            "or prefix a provider (e.g. 'together_ai/NAME')",
            param="model",
        )
        self.candidates = candidates


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a name resolved to: the canonical model and the endpoint the name selects."""

    name: str
    model: Model
    #: None only for a model that lists no endpoint (possible in a user's catalog file).
    endpoint: Endpoint | None

    @property
    def provider(self) -> str | None:
        return self.endpoint.provider if self.endpoint else None


# name (lower case) → {model index: endpoint index, or None for "the model itself"}
_Index = dict[str, dict[int, int | None]]


def normalise_provider(name: str) -> str:
    key = name.strip().lower()
    return PROVIDER_ALIASES.get(key, key)


def resolve(catalog: Catalog, name: str, *, provider: str | None = None) -> Resolution:
    """Resolve ``name``; ``provider`` (or a ``provider/`` prefix) picks the endpoint's provider.

    Raises :class:`~polyroute.errors.ModelNotFound` or :class:`AmbiguousModel`.
    """
    index = _index(catalog)
    key = name.strip().lower()
    want = normalise_provider(provider) if provider else None
    lookup = key
    hits = index.get(key)
    if hits is None:
        head, sep, rest = key.partition("/")
        if sep and normalise_provider(head) in catalog.providers:
            if want and want != normalise_provider(head):
                raise ModelNotFound(
                    f"{name!r} names provider {head!r}, not {want!r}", param="model"
                )
            want = normalise_provider(head)
            lookup, hits = rest, index.get(rest)
    if not hits:
        raise ModelNotFound(_not_found_message(catalog, name), param="model")
    if want is not None:
        offered = {mi: ei for mi, ei in hits.items() if catalog.models[mi].endpoints_at(want)}
        if not offered:
            ids = sorted({catalog.models[mi].id for mi in hits})
            where = ", ".join(
                sorted({e.provider for i in hits for e in catalog.models[i].endpoints})
            )
            raise ModelNotFound(
                f"{', '.join(ids)} is not offered by provider {want!r} in the catalog "
                f"(offered by: {where or 'none'})",
                param="model",
            )
        hits = offered
    if len(hits) > 1:
        raise AmbiguousModel(name, sorted(catalog.models[mi].id for mi in hits))
    [(mi, ei)] = hits.items()
    model = catalog.models[mi]
    return Resolution(name, model, _pick(model, ei, want, lookup))


def _pick(model: Model, ei: int | None, want: str | None, lookup: str) -> Endpoint | None:
    """The endpoint a name selects, within ``want``'s endpoints when a provider is wanted."""
    if want is None:
        return model.endpoints[ei] if ei is not None else model.default_endpoint
    candidates = model.endpoints_at(want)
    if ei is not None and model.endpoints[ei].provider == want:
        return model.endpoints[ei]
    for e in candidates:
        if lookup in (n.lower() for n in e.names):
            return e
    return candidates[0]


def suggestions(catalog: Catalog, name: str, limit: int = 5) -> list[str]:
    """Model ids that look like ``name``: those containing it first, then close spellings."""
    key = name.strip().lower().rpartition("/")[2]
    ids = [m.id for m in catalog.models]
    containing = sorted((i for i in ids if key and key in i), key=lambda i: (len(i), i))
    close = difflib.get_close_matches(key, ids, n=limit, cutoff=0.6)
    out: list[str] = []
    for i in [*containing, *close]:
        if i not in out:
            out.append(i)
    return out[:limit]


def _not_found_message(catalog: Catalog, name: str) -> str:
    similar = suggestions(catalog, name)
    hint = f"; did you mean: {', '.join(similar)}?" if similar else ""
    return (
        f"no model named {name!r} in the catalog{hint} "
        "(`polyroute models --search TEXT` lists what is there)"
    )


def _index(catalog: Catalog) -> _Index:
    if catalog._index is not None:
        return catalog._index
    index: _Index = defaultdict(dict)
    for mi, model in enumerate(catalog.models):
        # Endpoint names first: a model-level name then overrides them with "the model".
        for ei, endpoint in reversed(list(enumerate(model.endpoints))):
            for n in endpoint.names:
                index[n.lower()][mi] = ei
                index[f"{endpoint.provider}/{n}".lower()][mi] = ei
        for n in (model.id, *model.aliases):
            index[n.lower()][mi] = None
    catalog._index = dict(index)
    return catalog._index
