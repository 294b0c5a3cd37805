"""The provider interface: how the gateway (and the bench runner) talk to a model.

A *provider* is one configured server or engine (an OpenAI-compatible base URL with its key,
or the embedded llama.cpp engine). It serves one or more *models* from the config. Request
and response bodies are OpenAI chat-completion JSON as plain dicts: the gateway validates the
request once, and providers pass it on without re-modelling every field.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.options import NoOptions
from polyroute.options import Options as OptionsModel
from polyroute.providers.profiles import CACHE_READ_FIELDS

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the upstream reported them, in OpenAI's terms.

    ``prompt_tokens`` counts every input token, including those read from the provider's
    prompt cache (``cached_tokens``) and those written to it (``cache_write_tokens``): each
    of the three kinds may bill at its own price. Anthropic reports the three apart and
    Gemini counts thinking in its own field; their providers convert to this shape.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        if not isinstance(details, dict):
            details = {}
        cached = details.get("cached_tokens")
        if cached is None:  # a family that reports it elsewhere (DeepSeek, see profiles)
            for name in CACHE_READ_FIELDS:
                if name in usage:
                    cached = usage[name]
                    break
        return cls(
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            cached_tokens=_count(cached),
            # OpenRouter's name for it; the native providers report it the same way.
            cache_write_tokens=_count(details.get("cache_write_tokens")),
        )


def _count(value: Any) -> int:
    """A token count as reported, or 0 when it is not one (providers reject those first)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    return 0


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """Whether a model can take requests now, and if not, why and how to fix it."""

    ready: bool
    detail: str = "ok"


class Provider(ABC):
    """One upstream server or local engine, speaking one API (wire interface).

    Subclasses register under their ``kind`` (the name configs write as ``api:``) and
    declare the fields they take beyond the common ones: ``Options`` for the provider's
    entry, ``ModelOptions`` for each model entry it serves (pydantic models with
    ``Field(description=...)``, subclasses of :class:`polyroute.options.Options`).
    """

    kind: ClassVar[str]
    #: The provider entry's own fields (e.g. Azure's ``api_version``).
    Options: ClassVar[type[OptionsModel]] = NoOptions
    #: A model entry's own fields (e.g. llama.cpp's ``n_ctx``).
    ModelOptions: ClassVar[type[OptionsModel]] = NoOptions

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        models: list[ModelConfig],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport`` is the network seam: tests pass ``httpx.MockTransport`` to fake an
        upstream. Providers that do not speak HTTP ignore it."""
        self.name = name
        self.config = config
        self.models = {m.name: m for m in models}
        #: The entry's own fields as ``Options``, parsed once (when the config file was
        #: loaded, or here): wrong fields fail now, naming their path.
        self.options = config.options_as(type(self).Options, f"providers.{name}")
        for m in models:
            m.options_as(type(self).ModelOptions, f"models.{m.name}")

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Open pools and load models. Runs at startup, never on the request path."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release connections, threads and models."""

    @abstractmethod
    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        """Answer a non-streaming chat completion; returns the OpenAI response body.

        ``body["model"]`` has already been replaced by ``model.target``.
        Raises :class:`polyroute.errors.UpstreamError` subclasses on failure.
        """

    @abstractmethod
    def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        """Yield OpenAI ``chat.completion.chunk`` objects as they arrive.

        The provider asks for usage where it can; the last chunk may then carry ``usage``
        with empty ``choices``, as OpenAI sends it. Closing the iterator cancels the upstream
        request (that is how a client disconnect propagates).
        """

    @abstractmethod
    async def health(self, model: ModelConfig) -> ModelHealth:
        """Check whether ``model`` is ready; bounded by a short timeout."""
