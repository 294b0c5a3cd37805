"""``polyroute models``: list and filter the model catalog; ``models show NAME`` for one model.

Tables for people, ``--json`` for programs. ``--catalog FILE`` merges a user catalog file
(YAML, same schema) on top of the bundled one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polyroute.catalog import (
    AmbiguousModel,
    Capability,
    Catalog,
    CatalogError,
    Endpoint,
    Model,
    load_catalog,
    resolve,
)
from polyroute.catalog.resolve import normalise_provider
from polyroute.errors import ModelNotFound

models_app = typer.Typer(
    help=(
        "The model catalog: who serves which model, at what price, under which names.\n\n"
        "Without a command, list the models the options select, one row each, priced at "
        "their first matching endpoint in USD per million tokens (? = unknown)."
    ),
    invoke_without_command=True,
    rich_markup_mode="markdown",
)

_CATALOG_HELP = "A catalog YAML file merged on top of the bundled one (same schema)."


def _err(message: str, code: int) -> typer.Exit:
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        f"[red]error:[/red] {escape(message)}"
    )
    return typer.Exit(code)


def _load(path: Path | None) -> Catalog:
    try:
        return load_catalog(path)
    except CatalogError as e:
        raise _err(e.message, 2) from None


@models_app.callback()
def list_models(
    ctx: typer.Context,
    provider: str | None = typer.Option(
        None, "--provider", "-p", help="Only models this provider serves (e.g. openai, groq)."
    ),
    capability: list[str] | None = typer.Option(
        None, "--capability", "-c", help="Only models with this capability (repeatable)."
    ),
    max_input_price: float | None = typer.Option(
        None, "--max-input-price", help="Only endpoints at most this USD per million input tokens."
    ),
    min_context: int | None = typer.Option(
        None,
        "--min-context",
        help="Only models with a context window of at least this many tokens.",
    ),
    search: str | None = typer.Option(
        None, "--search", "-s", help="Only models whose id, alias, family or creator contains this."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    catalog_file: Path | None = typer.Option(
        None, "--catalog", help=_CATALOG_HELP, envvar="POLYROUTE_CATALOG"
    ),
    served: bool = typer.Option(
        False, "--served", help="List the models the config serves (with --config, like serve)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="The gateway's YAML config, for --served.", envvar="POLYROUTE_CONFIG"
    ),
) -> None:
    """List catalog models, one row each, priced at their first matching endpoint.

    Prices are USD per million tokens; ? means not known.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"catalog": catalog_file, "json": as_json}
        return
    if served:
        _print_served(config, as_json)
        return
    catalog = _load(catalog_file)
    wanted_caps = _check_capabilities(capability or [])
    want = normalise_provider(provider) if provider else None
    if want is not None and want not in catalog.providers:
        raise _err(f"unknown provider {provider!r}; known: {', '.join(catalog.providers)}", 2)
    rows = []
    needle = (search or "").strip().lower()
    for model in catalog.models:
        if wanted_caps - set(model.capabilities):
            continue
        if min_context is not None and (model.context_window or 0) < min_context:
            continue
        if needle and not _matches(model, needle):
            continue
        endpoints = [
            e
            for e in model.endpoints
            if (want is None or e.provider == want)
            and (max_input_price is None or _at_most(e.prices.input, max_input_price))
        ]
        if endpoints or (want is None and max_input_price is None):
            rows.append((model, endpoints[0] if endpoints else None))
    if as_json:
        typer.echo(json.dumps([_row_json(m, e) for m, e in rows], indent=2))
        return
    _print_list(rows)


@models_app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Any name of the model: id, alias, provider/name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    catalog_file: Path | None = typer.Option(None, "--catalog", help=_CATALOG_HELP),
) -> None:
    """Show one model: its names, limits, capabilities and every endpoint with its prices."""
    parent: dict[str, Any] = ctx.obj or {}
    catalog = _load(catalog_file or parent.get("catalog"))
    try:
        found = resolve(catalog, name)
    except (ModelNotFound, AmbiguousModel) as e:
        raise _err(e.message, 1) from None
    if as_json or parent.get("json"):
        data = found.model.model_dump(mode="json", exclude_none=True)
        data["resolved"] = {
            "name": name,
            "provider": found.provider,
            "upstream_id": found.endpoint.upstream_id if found.endpoint else None,
        }
        typer.echo(json.dumps(data, indent=2))
        return
    _print_model(found.model, found.endpoint, name)


def _check_capabilities(given: list[str]) -> set[str]:
    known = set(get_args(Capability))
    unknown = sorted(set(given) - known)
    if unknown:
        raise _err(f"unknown capability {', '.join(unknown)}; known: {', '.join(sorted(known))}", 2)
    return set(given)


def _matches(model: Model, needle: str) -> bool:
    names = [model.id, *model.aliases, model.family or "", model.creator or ""]
    return any(needle in n.lower() for n in names)


def _at_most(price: float | None, limit: float) -> bool:
    return price is not None and price <= limit  # an unknown price never passes as cheap


def _more(n: int, one: str, many: str) -> str:
    return f" (+{n} {one if n == 1 else many})" if n else ""


def _price(p: float | None) -> str:
    return "?" if p is None else f"{p:g}"


def _tokens(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, suffix in ((1_000_000, "M"), (1_048_576, "M"), (1000, "k"), (1024, "k")):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return f"{n / 1000:.0f}k"


def _row_json(model: Model, endpoint: Endpoint | None) -> dict[str, Any]:
    return {
        "id": model.id,
        "creator": model.creator,
        "family": model.family,
        "context_window": model.context_window,
        "capabilities": list(model.capabilities),
        "lacks": list(model.lacks),
        "provider": endpoint.provider if endpoint else None,
        "upstream_id": endpoint.upstream_id if endpoint else None,
        "prices": endpoint.prices.model_dump() if endpoint else None,
        "providers": sorted({e.provider for e in model.endpoints}),
    }


#: One letter per capability, so that a list row fits in 80 columns.
CAPABILITY_CODES = {
    "tools": "T",
    "json_mode": "J",
    "vision": "V",
    "reasoning": "R",
    "prompt_caching": "C",
    "pdf_input": "P",
    "audio_input": "A",
    "audio_output": "O",
    "video_input": "M",
    "computer_use": "U",
    "web_search": "W",
}


def _print_list(rows: list[tuple[Model, Endpoint | None]]) -> None:
    legend = " ".join(f"{code}={cap}" for cap, code in CAPABILITY_CODES.items())
    table = Table(
        caption=(
            f"{len(rows)} models; USD per million tokens at the provider shown (? = unknown). "
            f"Caps: {legend}. `polyroute models show NAME` lists every endpoint."
        ),
        pad_edge=False,
        padding=(0, 1),
    )
    table.add_column("Model", overflow="fold", ratio=3)
    table.add_column("Provider", overflow="fold", ratio=2)
    for header in ("Context", "Input", "Output", "Cached"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Caps", no_wrap=True)
    for model, e in rows:
        others = len({x.provider for x in model.endpoints} - {e.provider if e else ""})
        where = (e.provider if e else "-") + (f" +{others}" if others else "")
        prices = e.prices if e else None
        table.add_row(
            model.id,
            where,
            _tokens(model.context_window),
            _price(prices.input if prices else None),
            _price(prices.output if prices else None),
            _price(prices.cached_input if prices else None),
            "".join(sorted(CAPABILITY_CODES.get(c, "?") for c in model.capabilities)),
        )
    Console(highlight=False).print(table)


def _print_served(config_path: Path | None, as_json: bool) -> None:
    """The config's models as the gateway serves them: catalog values filled in."""
    from polyroute.catalog import apply_catalog
    from polyroute.config import load_config
    from polyroute.errors import ConfigError

    try:
        cfg = load_config(config_path)
        cfg = apply_catalog(cfg, load_catalog(cfg.catalog_file))
    except (ConfigError, CatalogError) as e:
        raise _err(e.message, 2) from None
    rows: list[dict[str, Any]] = [
        {
            "name": m.name,
            "provider": m.provider,
            "upstream_model": m.target,
            "catalog_id": m.catalog_id,
            "context_window": m.context_window,
            "input_price": m.input_price,
            "output_price": m.output_price,
            "cached_input_price": m.cached_input_price,
            "capabilities": sorted(m.capabilities or ()),
        }
        for m in cfg.models
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    where = str(config_path) if config_path else "the embedded default"
    table = Table(caption=f"{len(rows)} models served by {where}; USD per million tokens")
    table.add_column("Model", overflow="fold", ratio=2)
    table.add_column("Provider / upstream", overflow="fold", ratio=3)
    for header in ("Context", "Input", "Output"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Caps", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['provider']}: {r['upstream_model']}",
            _tokens(r["context_window"]),
            _price(r["input_price"]),
            _price(r["output_price"]),
            "".join(sorted(CAPABILITY_CODES.get(c, "?") for c in r["capabilities"])),
        )
    Console(highlight=False).print(table)


def _print_model(model: Model, selected: Endpoint | None, name: str) -> None:
    out = Console(highlight=False)
    out.print(f"[bold]{model.id}[/bold]  by {model.creator or '?'}, family {model.family or '?'}")
    if model.aliases:
        out.print(f"aliases: {', '.join(model.aliases)}")
    out.print(
        f"context window: {_tokens(model.context_window)} tokens; "
        f"max output: {_tokens(model.max_output_tokens)} tokens"
    )
    out.print(f"capabilities: {', '.join(model.capabilities) or 'none listed'}")
    if model.lacks:
        out.print(f"lacks: {', '.join(model.lacks)}")
    if model.benchmarks:
        out.print("benchmarks: " + ", ".join(f"{k} {v:g}" for k, v in model.benchmarks.items()))
    if selected is not None:
        out.print(f"{name!r} selects: {selected.provider}/{selected.upstream_id}")
    table = Table(caption="USD per million tokens (? = unknown); → the endpoint the name selects")
    table.add_column("")
    for header in ("Provider", "Upstream id", "API", "Input", "Output", "Cached", "Context"):
        table.add_column(
            header,
            justify="right" if header in ("Input", "Output", "Cached", "Context") else "left",
        )
    table.add_column("Until")
    for e in model.endpoints:
        table.add_row(
            "→" if e is selected else "",
            e.provider,
            e.upstream_id + _more(len(e.aliases), "alias", "aliases"),
            e.api_style,
            _price(e.prices.input),
            _price(e.prices.output),
            _price(e.prices.cached_input),
            _tokens(e.limits.context_window),
            str(e.deprecation_date or ""),
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to the ``polyroute`` app."""
    app.add_typer(models_app, name="models")
