"""polyroute on Ray Serve: gateway replicas behind Ray's HTTP proxy, scaled on queue length.

Each replica is one whole gateway process (:func:`polyroute.gateway.create_app`, built in the
replica from the same YAML config), so a replica answers exactly as ``polyroute serve`` does;
Ray adds the proxy, placement, restarts and autoscaling on ongoing requests per replica.
What must be exact across replicas lives outside them: budgets, reservations and shared rate
limits in the store's database (PostgreSQL), traces in a journal directory on the node that
every replica on it appends to (one segment each, one writer at a time; a killed replica's
sealed segments are stored by the writer of a replica that lives on).

Prometheus counters are kept as ``polyroute serve --workers N`` keeps them: every replica on
a node writes them into one node-local directory (prometheus-client's multiprocess mode,
``PROMETHEUS_MULTIPROC_DIR`` in the replicas' environment), so a scrape of ``/metrics``,
whichever replica answers it, adds up every replica of that node (docs/ray.md). Every
answer says which replica gave it (``x-polyroute-replica``).

Two entry points: ``polyroute ray serve --config FILE`` (:mod:`polyroute.cli.ray`, through
:func:`deploy` and :func:`delete`), and ``serve run polyroute.deploy.ray:app`` with the
config in ``POLYROUTE_CONFIG`` (or ``serve run polyroute.deploy.ray:build config=FILE
replicas=2``). This is the one module that imports Ray (``tests/test_layers.py``).

There is no separate embedding/scoring deployment: the default routing embedding costs about
0.9 ms a request in the replica (docs/routers.md), a fraction of what one more hop through
Ray costs (``benchmarks/ray_serve.py``: several ms of CPU a request), and batching pays only
for the full encoder, which routing does not use by default (docs/ray.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve
from ray.serve.config import AutoscalingConfig
from ray.serve.deployment import Application
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polyroute.config import Config, load_config
from polyroute.deploy import ray_proxy
from polyroute.gateway import create_app
from polyroute.telemetry import multiprocess

#: The deployment's name in Ray (and in its replicas' process titles).
DEPLOYMENT = "Gateway"


class RayServeOptions(BaseModel):
    """How the gateway runs on Ray Serve (flags of ``polyroute ray serve``)."""

    model_config = ConfigDict(extra="forbid")

    config: Path | None = Field(
        None, description="The gateway's YAML config; None: POLYROUTE_CONFIG, else defaults."
    )
    name: str = Field("polyroute", description="The Ray Serve application's name.")
    route_prefix: str = Field("/", description="Where Ray's HTTP proxy serves the gateway.")
    replicas: int | None = Field(
        None, ge=1, description="A fixed number of replicas; None: autoscale between the bounds."
    )
    min_replicas: int = Field(1, ge=1, description="Autoscaling's fewest replicas.")
    max_replicas: int = Field(4, ge=1, description="Autoscaling's most replicas.")
    target_ongoing_requests: float = Field(
        32.0,
        gt=0,
        description="Requests in flight per replica that autoscaling aims for (its queue length).",
    )
    upscale_delay_s: float = Field(
        30.0, ge=0, description="How long demand stays above the target before a replica is added."
    )
    downscale_delay_s: float = Field(
        600.0, ge=0, description="How long demand must stay below it before one is removed."
    )
    look_back_period_s: float = Field(
        30.0, gt=0, description="The window Serve averages requests in flight over."
    )
    max_ongoing_requests: int = Field(
        256,
        ge=1,
        description="Requests one replica takes at once; more wait in Ray's proxy.",
    )
    num_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for each replica.")
    metrics_dir: Path | None = Field(
        None,
        description=(
            "A node-local directory the replicas on each node keep their Prometheus counters "
            "in (one scrape adds them up); None: a fresh one under the temp directory."
        ),
    )
    forward_env: list[str] = Field(
        default_factory=list,
        description=(
            "Environment variables copied from here to every replica (Ray's runtime_env, kept "
            "in its control store), besides POLYROUTE_* and the providers' api_key_env."
        ),
    )

    @model_validator(mode="after")
    def _bounds(self) -> RayServeOptions:
        if self.replicas is None and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        return self

    def deployment_options(self, env: dict[str, str]) -> dict[str, Any]:
        """Keyword arguments of ``serve.deployment(...).options``; ``env`` for the replicas."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if env:
            actor["runtime_env"] = {"env_vars": env}
        options: dict[str, Any] = {
            "name": DEPLOYMENT,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": actor,
        }
        if self.replicas is not None:
            options["num_replicas"] = self.replicas
        else:
            options["autoscaling_config"] = AutoscalingConfig(
                min_replicas=self.min_replicas,
                max_replicas=self.max_replicas,
                target_ongoing_requests=self.target_ongoing_requests,
                upscale_delay_s=self.upscale_delay_s,
                downscale_delay_s=self.downscale_delay_s,
                look_back_period_s=self.look_back_period_s,
            )
        return options


class ReplicaApp:
    """The gateway's ASGI app, each answer marked with the replica that gave it
    (``x-polyroute-replica``: which replica answered is otherwise invisible behind the proxy).

    A wrapper, not middleware: middleware would take the gateway off its fast chat path.
    Anything else is the gateway app's (Serve reads ``add_exception_handler`` from it).
    """

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (b"x-polyroute-replica", replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            await send(message)

        await self.app(scope, receive, marked)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


@serve.ingress()
class GatewayReplica:
    """One gateway replica: the ordinary ASGI app, its lifespan run by Ray's replica."""

    def __init__(self, config: str | None) -> None:
        self.config_path = Path(config) if config is not None else None

    def __serve_build_asgi_app__(self) -> Any:
        metrics = os.environ.get(multiprocess.ENV)
        if metrics:  # before the first counter: prometheus-client writes its files there
            Path(metrics).mkdir(parents=True, exist_ok=True)
        replica = serve.get_replica_context().replica_id.unique_id
        return ReplicaApp(create_app(load_config(self.config_path)), replica)


def config_path(options: RayServeOptions) -> Path | None:
    """The config file the replicas read: the option, else ``POLYROUTE_CONFIG``; absolute,
    since replicas start in directories of Ray's."""
    config = options.config or (
        Path(os.environ["POLYROUTE_CONFIG"]) if os.environ.get("POLYROUTE_CONFIG") else None
    )
    return config.resolve() if config is not None else None


def replica_env(options: RayServeOptions, config: Config) -> dict[str, str]:
    """What replicas must see of this environment: Ray starts them from its own, not ours."""
    names = {n for n in os.environ if n.startswith("POLYROUTE_")} | set(options.forward_env)
    names |= {p.api_key_env for p in config.providers.values() if p.api_key_env}
    names.discard("POLYROUTE_CONFIG")  # the replicas get the absolute path as an argument
    return {n: os.environ[n] for n in sorted(names) if n in os.environ}


def metrics_dir(options: RayServeOptions) -> Path:
    """Where the replicas keep their counters: the option, else a fresh directory per deploy
    (so that no file of an earlier deployment is added in). The same path on every node."""
    if options.metrics_dir is not None:
        return options.metrics_dir.resolve()
    return Path(tempfile.gettempdir()) / f"polyroute-metrics-{options.name}-{uuid.uuid4().hex[:8]}"


def build_app(options: RayServeOptions) -> Application:
    """The Ray Serve application for these options (deploy it with ``serve.run``).

    The config is validated here first, so that a mistake is reported once, with its field,
    not by every replica Ray starts and restarts.
    """
    path = config_path(options)
    config = load_config(path)
    env = replica_env(options, config)
    if config.telemetry.metrics:
        env[multiprocess.ENV] = str(metrics_dir(options))
    deployment = serve.deployment(**options.deployment_options(env))
    bound: Application = deployment(GatewayReplica).bind(str(path) if path is not None else None)
    return bound


def deploy(options: RayServeOptions, *, address: str | None, host: str, port: int) -> Path:
    """Deploy (or update) the application on the cluster at ``address`` (None: RAY_ADDRESS,
    else a local one); returns, once its replicas answer, their metrics directory.

    Serve's HTTP proxy is started at ``host:port`` if Serve is not running yet, with
    :mod:`polyroute.deploy.ray_proxy` in it (a replica lost mid-request is an OpenAI error);
    a Serve already running keeps its proxy and options, as Serve does.
    """
    proxy_env = {ray_proxy.CALLBACK_ENV: os.environ.get(ray_proxy.CALLBACK_ENV, ray_proxy.CALLBACK)}
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    serve.start(
        http_options={"host": host, "port": port},
        controller_options={"runtime_env": {"env_vars": proxy_env}},
    )
    metrics = metrics_dir(options)
    options = options.model_copy(update={"metrics_dir": metrics})
    serve.run(build_app(options), name=options.name, route_prefix=options.route_prefix)
    return metrics


def delete(name: str, metrics: Path | None = None) -> None:
    """Delete the application ``name`` (its replicas shut down, each saving what it learned
    and journaled) and, if given, this node's metrics directory of it."""
    serve.delete(name)
    if metrics is not None:
        shutil.rmtree(metrics, ignore_errors=True)


def build(args: dict[str, str]) -> Application:
    """``serve run polyroute.deploy.ray:build config=FILE replicas=2 ...`` (any option)."""
    return build_app(RayServeOptions.model_validate(args))


def __getattr__(name: str) -> Application:
    # ``serve run polyroute.deploy.ray:app``: built when asked for, not on import (importing
    # this module must not read, or fail on, a config).
    if name == "app":
        return build_app(RayServeOptions())
    raise AttributeError(name)
