"""``polyroute ray serve``: deploy the gateway as a Ray Serve application.

Ray is an optional extra (``pip install 'polyroute[ray]'``): it is imported only when this
command runs, so the rest of the command line works without it.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from polyroute.errors import ConfigError

err = Console(stderr=True, highlight=False, soft_wrap=True)
ray_app = typer.Typer(help="Run the gateway on a Ray cluster (Ray Serve).", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


@ray_app.command("serve")
def serve_on_ray(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="The gateway's YAML config.", envvar="POLYROUTE_CONFIG"
    ),
    replicas: int | None = typer.Option(
        None, help="A fixed number of gateway replicas [default: autoscale]."
    ),
    min_replicas: int = typer.Option(1, help="Autoscaling's fewest replicas."),
    max_replicas: int = typer.Option(4, help="Autoscaling's most replicas."),
    target_ongoing_requests: float = typer.Option(
        32.0, help="Requests in flight per replica that autoscaling aims for."
    ),
    upscale_delay_s: float = typer.Option(
        30.0, help="Seconds demand stays above the target before a replica is added."
    ),
    downscale_delay_s: float = typer.Option(
        600.0, help="Seconds demand stays below it before a replica is removed."
    ),
    look_back_period_s: float = typer.Option(
        30.0, help="The window Serve averages requests in flight over."
    ),
    num_cpus: float = typer.Option(1.0, help="CPUs Ray reserves for each replica."),
    metrics_dir: Path | None = typer.Option(
        None,
        help="Node-local directory for the replicas' Prometheus counters [default: a fresh "
        "one under the temp directory].",
    ),
    address: str | None = typer.Option(
        None, help="The Ray cluster (host:port of its GCS) [default: RAY_ADDRESS, else local]."
    ),
    host: str | None = typer.Option(
        None, help="Where Ray's HTTP proxy listens [default: the config's server.host]."
    ),
    port: int | None = typer.Option(
        None, help="The proxy's port [default: the config's server.port]."
    ),
    name: str = typer.Option("polyroute", help="The Ray Serve application's name."),
    detach: bool = typer.Option(
        False,
        help="Return once the replicas answer, leaving them running on the cluster (which "
        "must outlive this command: `ray start --head`, or --address).",
    ),
) -> None:
    """Deploy gateway replicas on Ray Serve; Ray's HTTP proxy serves them at one address.

    Budgets and rate limits stay exact across replicas when store.database_url is a
    PostgreSQL database (see docs/ray.md).
    """
    from polyroute.config import load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail(e.message) from None
    try:
        from polyroute.deploy.ray import RayServeOptions, delete, deploy
    except ImportError as e:
        raise _fail(f"Ray Serve is not installed ({e}): pip install 'polyroute[ray]'") from None
    try:
        options = RayServeOptions(
            config=config,
            name=name,
            replicas=replicas,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            target_ongoing_requests=target_ongoing_requests,
            upscale_delay_s=upscale_delay_s,
            downscale_delay_s=downscale_delay_s,
            look_back_period_s=look_back_period_s,
            num_cpus=num_cpus,
            metrics_dir=metrics_dir,
        )
    except ValidationError as e:
        raise _fail(str(e.errors()[0]["msg"])) from None
    bind_host, bind_port = host or cfg.server.host, port or cfg.server.port
    try:
        metrics = deploy(options, address=address, host=bind_host, port=bind_port)
    except ConfigError as e:
        raise _fail(e.message) from None
    except Exception as e:  # Ray's own errors (no cluster, a port taken): a message, not a trace
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise _fail(
            f"Ray Serve could not deploy on {where}: {type(e).__name__}: {e}. "
            "Check the cluster with `ray status` (and --address), or the port with --port"
        ) from None
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    err.print(f"polyroute on Ray Serve at http://{shown}:{bind_port}/v1 (application {name!r})")
    if detach:
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        err.print(f"deleting application {name!r}")
        delete(name, metrics)


def register(app: typer.Typer) -> None:
    app.add_typer(ray_app, name="ray")
