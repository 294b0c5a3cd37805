"""Engines: inference servers (llama.cpp server, vLLM, SGLang, Ollama) polyroute runs itself.

A model entry with ``engine: {kind: ..., args: {...}, port: auto}`` is served by a process
polyroute starts on 127.0.0.1, waits for, health-checks, restarts with backoff (marking the
model down after a crash loop), optionally stops when idle, and stops cleanly with the
gateway. Requests reach it through the ordinary OpenAI-compatible provider.
"""

from __future__ import annotations

from pathlib import Path

from polyroute.config import WeightsConfig
from polyroute.engines.commands import EngineCommand, build_command
from polyroute.engines.manager import EngineGate, Engines, attach_engines
from polyroute.engines.process import EngineProcess
from polyroute.weights.store import WeightsStore, default_store, use_default_store


def weights_store(config: WeightsConfig) -> WeightsStore:
    """The gateway's model store (also the embedded engine's, when the config sets one)."""
    if config.dir is None and config.max_size_gb is None:
        return default_store()
    store = WeightsStore(
        None if config.dir is None else Path(config.dir),
        max_bytes=None if config.max_size_gb is None else int(config.max_size_gb * 1e9),
    )
    use_default_store(store)
    return store


__all__ = [
    "EngineCommand",
    "EngineGate",
    "EngineProcess",
    "Engines",
    "attach_engines",
    "build_command",
    "weights_store",
]
