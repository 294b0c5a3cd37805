"""Google's Gemini API (AI Studio ``generativelanguage``), natively: thinking budgets, cached
and thinking token counts, exact finish reasons.

Kind ``gemini``. :mod:`polyroute.providers.gemini_wire` translates OpenAI chat JSON both
ways; this module posts to ``{base}/models/{model}:generateContent`` (or
``:streamGenerateContent?alt=sse``) with the key in the ``x-goog-api-key`` header, never in
the URL (where it would end up in logs). ``base_url`` defaults to
``https://generativelanguage.googleapis.com/v1beta``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from urllib.parse import quote

import httpx
import orjson

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import UpstreamError
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth, Provider
from polyroute.providers.gemini_wire import StreamTranslator, from_gemini, to_gemini
from polyroute.providers.http_json import JsonHttp, error_message

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


class GeminiProvider(Provider):
    """Talks Gemini's ``generateContent`` and ``streamGenerateContent``."""

    kind = "gemini"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        models: list[ModelConfig],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, models, transport=transport)
        key = config.api_key()
        self._http = JsonHttp(name, config, {"x-goog-api-key": key} if key else {}, transport)
        self._base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")

    def _url(self, model: str, method: str) -> str:
        name = model.removeprefix("models/")
        return f"{self._base}/models/{quote(name, safe='-._@')}:{method}"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        url = self._url(body["model"], "generateContent")
        data = await self._http.post_json(url, to_gemini(body))
        return from_gemini(data, body["model"])

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        url = self._url(body["model"], "streamGenerateContent") + "?alt=sse"
        translator = StreamTranslator(body["model"])
        response = await self._http.send(self._http.request("POST", url, to_gemini(body)))
        try:
            if response.status_code >= 400:
                raise self._http.status_error(response.status_code, await response.aread())
            async for _event, data in self._http.events(response):
                if "error" in data and "candidates" not in data:
                    detail = error_message(orjson.dumps(data)) or "no detail"
                    raise UpstreamError(f"upstream {self.name} failed mid-stream: {detail}")
                for chunk in translator.feed(data):
                    yield chunk
            if not translator.complete:  # never pass a cut-off answer off as a whole one
                raise UpstreamError(f"upstream {self.name} ended the stream before a finishReason")
            for chunk in translator.end():
                yield chunk
        finally:
            await response.aclose()

    async def health(self, model: ModelConfig) -> ModelHealth:
        url = f"{self._base}/models/{quote(model.target.removeprefix('models/'), safe='-._@')}"
        try:
            response = await self._http.send(self._http.request("GET", url))
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
        if response.status_code == 404:
            return ModelHealth(False, f"upstream {self.name} does not know model {model.target!r}")
        if response.status_code >= 400:
            return ModelHealth(False, f"upstream {self.name} answered {response.status_code}")
        return ModelHealth(True)


PROVIDERS.add(GeminiProvider.kind, GeminiProvider)
