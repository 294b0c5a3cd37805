"""The set of live providers built from a config: the one way to reach a model by name.

The gateway and the bench runner both go through :class:`ProviderPool`, so anything the
gateway can serve can also be benchmarked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import httpx

from polyroute.config import Config, ModelConfig
from polyroute.errors import ModelNotFound
from polyroute.kinds import provider_class
from polyroute.providers.base import JSON, ModelHealth, Provider


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved model: its config and the provider that serves it."""

    model: ModelConfig
    provider: Provider


class ProviderPool:
    """Providers keyed by name, and model names (and aliases) resolved to targets."""

    def __init__(
        self, config: Config, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {}
        for pname, pconf in config.providers.items():
            cls = provider_class(pname, pconf.api)
            models = [m for m in config.models if m.provider == pname]
            self.providers[pname] = cls(pname, pconf, models, transport=transport)
        self._targets: dict[str, Target] = {}
        for m in config.models:
            target = Target(m, self.providers[m.provider])
            for name in (m.name, *m.aliases):
                self._targets[name] = target

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.providers.values()))

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.providers.values()))

    def names(self) -> list[str]:
        """The canonical names of every configured model, in config order."""
        return [m.name for m in self.config.models]

    def resolve(self, name: str) -> Target:
        try:
            return self._targets[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFound(
                f"The model '{name}' does not exist or is not configured; available: {known}",
                param="model",
            ) from None

    async def chat(self, name: str, body: JSON) -> JSON:
        """Send a non-streaming request to model ``name`` (its upstream name is filled in)."""
        t = self.resolve(name)
        return await t.provider.chat(t.model, {**body, "model": t.model.target})

    def chat_stream(self, name: str, body: JSON) -> AsyncGenerator[JSON, None]:
        t = self.resolve(name)
        return t.provider.chat_stream(t.model, {**body, "model": t.model.target})

    async def health(self) -> dict[str, ModelHealth]:
        names = self.names()
        checks = [self._targets[n].provider.health(self._targets[n].model) for n in names]
        return dict(zip(names, await asyncio.gather(*checks), strict=True))
