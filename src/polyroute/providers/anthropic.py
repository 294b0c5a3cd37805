"""Anthropic's Messages API, natively: prompt caching, cache-token usage and exact stop reasons.

Kind ``anthropic``. The gateway hands OpenAI chat JSON in and expects it back;
:mod:`polyroute.providers.anthropic_wire` translates both ways, and this module sends the
request (``x-api-key`` and ``anthropic-version`` headers) over the pooled transport.
``base_url`` defaults to ``https://api.anthropic.com`` (with or without ``/v1``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import UpstreamError
from polyroute.providers import PROVIDERS
from polyroute.providers.anthropic_wire import StreamTranslator, from_anthropic, to_anthropic
from polyroute.providers.base import JSON, ModelHealth, Provider
from polyroute.providers.http_json import JsonHttp

DEFAULT_BASE_URL = "https://api.anthropic.com"
#: The API version this translation follows; a ``headers:`` entry in the config overrides it.
API_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    """Talks Anthropic's ``POST /v1/messages``, streamed or not."""

    kind = "anthropic"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        models: list[ModelConfig],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, models, transport=transport)
        headers = {"anthropic-version": API_VERSION}
        key = config.api_key()
        if key:
            headers["x-api-key"] = key
        self._http = JsonHttp(name, config, headers, transport)
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        base = base if base.endswith("/v1") else f"{base}/v1"
        self._messages_url = f"{base}/messages"
        self._models_url = f"{base}/models"
        self._count_url = f"{base}/messages/count_tokens"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        request = to_anthropic({**body, "stream": False})
        data = await self._http.post_json(self._messages_url, request)
        return from_anthropic(data, json_mode=_json_mode(body))

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        request = to_anthropic({**body, "stream": True})
        translator = StreamTranslator(json_mode=_json_mode(body))
        response = await self._http.send(self._http.request("POST", self._messages_url, request))
        try:
            if response.status_code >= 400:
                raise self._http.status_error(response.status_code, await response.aread())
            async for event, data in self._http.events(response):
                for chunk in translator.feed(event, data):
                    yield chunk
            if not translator.complete:  # never pass a cut-off answer off as a whole one
                raise UpstreamError(f"upstream {self.name} ended the stream before message_stop")
        finally:
            await response.aclose()

    async def count_tokens(self, model: ModelConfig, body: JSON) -> int:
        """Anthropic's own count of an Anthropic Messages request's input tokens."""
        data = await self._http.post_json(self._count_url, {**body, "model": model.target})
        return int(data.get("input_tokens") or 0)

    async def health(self, model: ModelConfig) -> ModelHealth:
        try:
            response = await self._http.send(self._http.request("GET", self._models_url))
            try:
                await response.aread()
            finally:
                await response.aclose()
        except (UpstreamError, httpx.HTTPError) as e:
            return ModelHealth(False, str(e))
        if response.status_code in (401, 403):
            return ModelHealth(
                False, f"upstream {self.name} refused the API key ({response.status_code})"
            )
        if response.status_code >= 500:
            return ModelHealth(False, f"upstream {self.name} answered {response.status_code}")
        return ModelHealth(True)


def _json_mode(body: JSON) -> bool:
    rf = body.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


PROVIDERS.add(AnthropicProvider.kind, AnthropicProvider)
