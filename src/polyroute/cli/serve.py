"""``polyroute serve``: run the gateway."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from polyroute.config import load_config
from polyroute.errors import ConfigError

err = Console(stderr=True)


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
) -> None:
    """Start the OpenAI-compatible gateway.

    Then point any OpenAI client at it, e.g. in Python:
    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").
    """
    import uvicorn

    from polyroute.gateway import create_app

    try:
        cfg = load_config(config)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {escape(e.message)}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if host is not None or port is not None:
        # The gate decides from the address really bound whether auth may stay off.
        bind = {"host": host or cfg.server.host, "port": port or cfg.server.port}
        cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update=bind)})
    server = cfg.server
    try:
        app = create_app(cfg)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {escape(e.message)}")
        raise typer.Exit(2) from None
    bind_host, bind_port = host or server.host, port or server.port
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    for line in app.state.gateway.describe(f"http://{shown}:{bind_port}"):
        logging.getLogger("polyroute").info(line)
    uvicorn.run(
        app,
        host=bind_host,
        port=bind_port,
        log_level=log_level,
        access_log=False,  # every request is recorded in the store already
        timeout_graceful_shutdown=10,
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
