"""Azure OpenAI: the OpenAI chat API at per-deployment URLs, with an ``api-key`` header.

Kind ``azure``. Azure serves each *deployment* at
``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``; a model's
``upstream_model`` (or its name) is the deployment's name. Everything else (bodies, streams,
errors) is OpenAI's, so this is the OpenAI-compatible provider with other URLs and another
key header.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from pydantic import Field

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.options import Options
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON
from polyroute.providers.openai_compat import OpenAICompatProvider

#: The newest generally available data-plane version when this was written.
DEFAULT_API_VERSION = "2024-10-21"


class AzureOptions(Options):
    """A provider entry with ``api: azure``."""

    api_version: str = Field(
        DEFAULT_API_VERSION,
        description="The ``api-version`` query parameter of every request (default: a GA version).",
    )


class AzureOpenAIProvider(OpenAICompatProvider):
    """OpenAI-compatible, at Azure's deployment URLs."""

    kind = "azure"
    Options = AzureOptions

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        models: list[ModelConfig],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, models, transport=transport)
        assert config.base_url is not None  # the parent refuses a config without one
        self._base = config.base_url.rstrip("/").removesuffix("/openai")
        self._version = config.options_as(AzureOptions, f"providers.{name}").api_version
        key = config.api_key()
        for headers in (self._headers, self._chat_headers):
            headers.pop("authorization", None)
            if key and "api-key" not in headers:
                headers["api-key"] = key
        self._models_url = httpx.URL(
            f"{self._base}/openai/models", params={"api-version": self._version}
        )
        self._urls: dict[str, httpx.URL] = {}

    def deployment_url(self, deployment: str) -> httpx.URL:
        url = self._urls.get(deployment)
        if url is None:
            url = httpx.URL(
                f"{self._base}/openai/deployments/{quote(deployment, safe='')}/chat/completions",
                params={"api-version": self._version},
            )
            self._urls[deployment] = url
        return url

    def _post_chat(self, body: JSON) -> httpx.Request:
        request = super()._post_chat(body)
        request.url = self.deployment_url(str(body["model"]))
        return request


PROVIDERS.add(AzureOpenAIProvider.kind, AzureOpenAIProvider)
