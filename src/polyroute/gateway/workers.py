"""Several gateway processes on one port: ``polyroute serve --workers N``.

uvicorn runs them: its supervisor binds the port once, starts N worker processes that
accept on it (the kernel spreads connections), restarts a worker that dies and stops them
all on SIGTERM or Ctrl-C. Each worker builds its own app from :func:`worker_app` (an app
factory uvicorn imports by name), so each has its own event loop, providers, routers (their
weights loaded once, at its start) and recorder (its journal segments and its writer).

What must stay exact across workers lives outside them: traces, budgets, rate limits
(``auth.rate_limits: database``) and online routers' statistics in the store's database,
metrics in the shared directory of :mod:`polyroute.telemetry.multiprocess`. That is why
some configurations are refused with more than one worker (:func:`for_workers`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson
import sqlalchemy as sa

from polyroute.config import AuthConfig, Config, load_config
from polyroute.errors import ConfigError

#: How the supervisor tells each worker what to serve (JSON: config path, bind, log level).
SETTINGS_ENV = "POLYROUTE_WORKER_SETTINGS"
#: What uvicorn imports in each worker.
FACTORY = "polyroute.gateway.workers:worker_app"


def with_bind(config: Config, host: str | None, port: int | None) -> Config:
    """``config`` with the address the command line asked for (the gate reads it)."""
    if host is None and port is None:
        return config
    bind = {"host": host or config.server.host, "port": port or config.server.port}
    return config.model_copy(update={"server": config.server.model_copy(update=bind)})


def for_workers(config: Config, workers: int) -> Config:
    """``config`` as ``workers`` processes serve it, or :class:`ConfigError` saying the fix.

    Rate limits left at their default are counted in the database (shared by the workers);
    what cannot be shared is refused.
    """
    if workers <= 1:
        return config
    url = sa.make_url(config.store.database_url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError(
            f"store.database_url {config.store.database_url!r} is in memory: each of the "
            f"{workers} workers would keep its own traces and budgets; use a SQLite file "
            "or PostgreSQL"
        )
    engines = [m.name for m in config.models if m.engine is not None]
    if engines:
        raise ConfigError(
            f"models {', '.join(engines)} are served by engines polyroute starts: each of "
            f"the {workers} workers would start its own on the same port; run them with one "
            "worker, or as servers of their own that the models point at (base_url)"
        )
    auth = config.auth
    if isinstance(auth, AuthConfig) and auth.rate_limits == "memory":
        if "rate_limits" in auth.model_fields_set:
            raise ConfigError(
                f"auth.rate_limits is 'memory': each of the {workers} workers would count "
                "RPM and TPM on its own; set auth.rate_limits: database"
            )
        shared = auth.model_copy(update={"rate_limits": "database"})
        config = config.model_copy(update={"auth": shared})
    return config


def worker_settings(
    config_path: str | None, *, host: str, port: int, workers: int, log_level: str
) -> str:
    """The settings :func:`worker_app` reads, as the environment carries them."""
    settings = {
        "config": config_path,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": log_level,
    }
    return orjson.dumps(settings).decode()


def worker_app() -> Any:
    """The app of one worker (uvicorn calls it in each worker process)."""
    from polyroute.gateway.app import create_app

    settings = orjson.loads(os.environ[SETTINGS_ENV])
    level = str(settings.get("log_level", "info")).upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    config = with_bind(load_config(settings["config"]), settings["host"], settings["port"])
    config = for_workers(config, int(settings["workers"]))
    app = create_app(config)
    log = logging.getLogger("polyroute")
    host = str(settings["host"])
    shown = f"[{host}]" if ":" in host else host
    for line in app.state.gateway.describe(f"http://{shown}:{settings['port']}"):
        log.debug(line)
    log.info("worker %d serving", os.getpid())
    return app
