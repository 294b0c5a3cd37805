"""``polyroute``: the entry point. Each area adds its commands through ``register(app)``."""

from __future__ import annotations

import importlib

import typer
from rich.console import Console

from polyroute import __version__

app = typer.Typer(
    name="polyroute",
    help=(
        "polyroute: one OpenAI-compatible endpoint that routes each request to the model "
        "that answers it well for the least money.\n\n"
        "Start with `polyroute serve` (local models, no key needed), then point any OpenAI "
        "client at http://127.0.0.1:8000/v1."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # help texts keep their [brackets] (rich markup ate them)
)
err = Console(stderr=True, soft_wrap=True)

# One module per area; each defines ``register(app: typer.Typer) -> None``.
_COMMAND_MODULES = (
    "polyroute.cli.serve",
    "polyroute.cli.bench",
    "polyroute.cli.routing_data",
    "polyroute.cli.models",
    "polyroute.cli.routing",
    "polyroute.cli.engines",
    "polyroute.cli.weights",
    "polyroute.cli.router",
    "polyroute.cli.keys",
    "polyroute.cli.ray",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"polyroute {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """polyroute command line."""


for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
