"""``polyroute serve``: run the gateway."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from polyroute.config import Config, load_config
from polyroute.errors import ConfigError

err = Console(stderr=True, soft_wrap=True)


def serve(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML config (providers, models, routers). Without it: the embedded local models.",
        envvar="POLYROUTE_CONFIG",
    ),
    host: str | None = typer.Option(None, help="Address to listen on [default: 127.0.0.1]."),
    port: int | None = typer.Option(None, help="Port to listen on [default: 8000]."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    workers: int | None = typer.Option(
        None,
        min=1,
        max=256,
        help="Gateway processes sharing the port [default: server.workers, 1].",
    ),
) -> None:
    """Start the OpenAI-compatible gateway.

    Then point any OpenAI client at it, e.g. in Python:
    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").
    """
    import uvicorn

    from polyroute.gateway import create_app
    from polyroute.gateway.workers import for_workers, with_bind

    try:
        cfg = load_config(config)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {escape(e.message)}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    cfg = with_bind(cfg, host, port)
    server = cfg.server
    n = workers if workers is not None else server.workers
    if n > 1:
        try:
            for_workers(cfg, n)
        except ConfigError as e:
            err.print(f"[red]error:[/red] {escape(e.message)}")
            raise typer.Exit(2) from None
        _serve_workers(cfg, config, n, log_level)
        return
    try:
        app = create_app(cfg)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {escape(e.message)}")
        raise typer.Exit(2) from None
    shown = f"[{server.host}]" if ":" in server.host else server.host
    for line in app.state.gateway.describe(f"http://{shown}:{server.port}"):
        logging.getLogger("polyroute").info(line)
    uvicorn.run(
        app,
        host=server.host,
        port=server.port,
        log_level=log_level,
        access_log=False,  # every request is recorded in the store already
        timeout_graceful_shutdown=10,
    )


def _serve_workers(cfg: Config, config: Path | None, n: int, log_level: str) -> None:
    """uvicorn's supervisor and ``n`` workers, each building its app from the same config."""
    import uvicorn

    from polyroute.gateway.workers import FACTORY, SETTINGS_ENV, worker_settings
    from polyroute.store import Store
    from polyroute.telemetry.multiprocess import metrics_dir

    host, port = cfg.server.host, cfg.server.port
    # Once, here: N workers migrating a new database at once would race on its tables.
    store = Store(cfg.store.database_url)
    try:
        store.migrate()
    finally:
        store.dispose()
    settings = worker_settings(
        str(config) if config is not None else None,
        host=host,
        port=port,
        workers=n,
        log_level=log_level,
    )
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("polyroute").info("polyroute: %d workers at http://%s:%d/v1", n, shown, port)
    # Set before the workers start: they inherit the environment (and prometheus-client
    # reads its directory when they import it).
    os.environ[SETTINGS_ENV] = settings
    with metrics_dir():
        uvicorn.run(
            FACTORY,
            factory=True,
            workers=n,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=10,
        )


def register(app: typer.Typer) -> None:
    app.command()(serve)
