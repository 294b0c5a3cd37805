"""The provider of an engine-served model: the OpenAI-compatible one, gated on the engine.

A request to a ready engine goes straight through (one state comparison on the hot path).
Otherwise it waits, at most ``engine.request_wait_s``, for the engine to start (an idle
engine is started by the request) or to come back from a restart; past that it fails with
:class:`~polyroute.errors.EngineUnavailable`, which is retryable, so a routed request falls
over to its next model.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from polyroute.config import ModelConfig
from polyroute.engines.process import IDLE, READY, EngineProcess
from polyroute.errors import EngineUnavailable
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth
from polyroute.providers.llama_local import LlamaCppLoadOptions
from polyroute.providers.openai_compat import OpenAICompatProvider


class EngineProvider(OpenAICompatProvider):
    """Talks to the engine polyroute runs for one model; made by the gateway, never configured."""

    kind = "engine"
    #: ``n_ctx`` and ``n_threads``, passed to a ``llama_cpp_server`` engine.
    ModelOptions = LlamaCppLoadOptions
    engine: EngineProcess | None = None

    async def _ready(self, model: ModelConfig) -> EngineProcess:
        engine = self.engine
        if engine is None:
            raise EngineUnavailable(f"model {model.name!r}: its engine was never started")
        if engine.state != READY:
            wait = engine.config.request_wait_s
            if not await engine.wait_ready(wait):
                raise EngineUnavailable(
                    f"model {model.name!r}: its {engine.config.kind} engine is {engine.state} "
                    f"({engine.detail}); waited {wait:g}s"
                )
        return engine

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        engine = await self._ready(model)
        engine.begin()
        try:
            return await super().chat(model, body)
        finally:
            engine.end()

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        engine = await self._ready(model)
        engine.begin()
        try:
            async for chunk in super().chat_stream(model, body):
                yield chunk
        finally:
            engine.end()

    async def health(self, model: ModelConfig) -> ModelHealth:
        engine = self.engine
        if engine is None:
            return ModelHealth(False, "engine not started")
        if engine.state == IDLE:
            return ModelHealth(True, engine.detail)
        if engine.state != READY:
            return ModelHealth(False, f"engine {engine.state}: {engine.detail}")
        return await super().health(model)


PROVIDERS.add(EngineProvider.kind, EngineProvider)
