"""Loading the catalog: the bundled data, plus a user's YAML file merged on top.

The bundled catalog is read and validated once per process (it is cached). A user file
uses the same schema; for a model whose ``id`` is already known, the fields it writes
replace the bundled ones (nested objects such as ``prices`` field by field), and its
endpoints merge with the bundled ones on ``(provider, upstream_id)``; new ids add models.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from polyroute.catalog.schema import Catalog, Model, Provenance
from polyroute.errors import ConfigError

BUNDLED = Path(__file__).parent / "data" / "catalog.json"

_M = TypeVar("_M", bound=BaseModel)


class CatalogError(ConfigError):
    """A catalog file cannot be used; the message names the model, endpoint and field."""


def parse_catalog(data: bytes | str | dict[str, Any], *, source: str) -> Catalog:
    """Validate catalog data (JSON text or parsed), naming the entry and field on error."""
    try:
        if isinstance(data, dict):
            return Catalog.model_validate(data)
        return Catalog.model_validate_json(data)
    except ValidationError as e:
        raw = data if isinstance(data, dict) else _json_or_none(data)
        raise CatalogError(_describe(source, e, raw)) from None


@functools.lru_cache(maxsize=1)
def bundled_catalog() -> Catalog:
    """The catalog shipped with polyroute, read once per process."""
    gz = BUNDLED.with_name(BUNDLED.name + ".gz")  # the build script gzips it past ~1 MB
    if not BUNDLED.exists() and gz.exists():
        return parse_catalog(gzip.decompress(gz.read_bytes()), source=str(gz))
    return parse_catalog(BUNDLED.read_bytes(), source=str(BUNDLED))


def load_catalog(user_file: str | Path | None = None) -> Catalog:
    """The bundled catalog, with ``user_file`` (YAML or JSON, same schema) merged on top."""
    if user_file is None:
        return bundled_catalog()
    path = Path(user_file).expanduser().resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise CatalogError(f"catalog file {path} does not exist") from None
    return _load_merged(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_merged(path: str, _mtime_ns: int, _size: int) -> Catalog:
    # The file's mtime and size are part of the cache key: an edited file is read again.
    return merge(bundled_catalog(), read_catalog_file(path))


def read_catalog_file(path: str | Path) -> Catalog:
    """Read one catalog file (YAML, of which JSON is a subset) on its own."""
    from polyroute.config import read_yaml_mapping

    p = Path(path)
    raw = read_yaml_mapping(p, "catalog file", "a mapping with a 'models' list", CatalogError)
    catalog = parse_catalog(raw, source=str(p))
    if not catalog.sources:
        catalog = catalog.model_copy(update={"sources": [Provenance(source=str(p))]})
    return catalog


def merge(base: Catalog, overlay: Catalog) -> Catalog:
    """``overlay``'s models on top of ``base``'s (see the module docstring for the rules)."""
    models = {m.id: m for m in base.models}
    for patch in overlay.models:
        old = models.get(patch.id)
        models[patch.id] = patch if old is None else _merge_model(old, patch)
    return Catalog(sources=[*base.sources, *overlay.sources], models=list(models.values()))


def _merge_model(old: Model, patch: Model) -> Model:
    merged = _overlay(old, patch, skip={"endpoints"})
    endpoints = {e.key: e for e in old.endpoints}
    for e in patch.endpoints:
        endpoints[e.key] = _overlay(endpoints[e.key], e) if e.key in endpoints else e
    return merged.model_copy(update={"endpoints": list(endpoints.values())})


def _overlay(base: _M, patch: _M, skip: frozenset[str] | set[str] = frozenset()) -> _M:
    """``base`` with the fields ``patch`` was given explicitly; nested objects recurse."""
    updates: dict[str, Any] = {}
    for name in patch.model_fields_set - skip:
        new, old = getattr(patch, name), getattr(base, name)
        if isinstance(new, BaseModel) and isinstance(old, BaseModel):
            new = _overlay(old, new)
        updates[name] = new
    return base.model_copy(update=updates)


def _json_or_none(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _describe(source: str, err: ValidationError, raw: Any) -> str:
    """One line per problem, e.g. ``models[3] (gpt-4o) › endpoints[0] (openai/gpt-4o) ›
    prices.input: Input should be greater than or equal to 0 (got -1)``."""
    lines = [f"invalid catalog in {source}:"]
    for e in err.errors():
        segments: list[str] = []
        field: list[str] = []
        node = raw
        for key in e["loc"]:
            node = node[key] if _has(node, key) else None
            if isinstance(key, int) and field:
                field[-1] += f"[{key}]"
                segments.append(".".join(field) + _label(node))
                field = []
            else:
                field.append(str(key))
        if field:
            segments.append(".".join(field))
        where = " › ".join(segments) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; see docs/catalog.md for the fields)"
        elif not isinstance(e.get("input"), dict | list):
            msg += f" (got {e.get('input')!r})"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def _has(node: Any, key: str | int) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)


def _label(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    if isinstance(node.get("id"), str):
        return f" ({node['id']})"
    if isinstance(node.get("provider"), str) and isinstance(node.get("upstream_id"), str):
        return f" ({node['provider']}/{node['upstream_id']})"
    return ""
