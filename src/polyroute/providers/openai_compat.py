"""Any OpenAI-compatible upstream: OpenAI, vLLM, SGLang, Ollama, llama.cpp server, ...

One pooled ``httpx.AsyncClient`` per provider. The request body is forwarded as it came
(with the upstream's model name); errors are mapped once onto polyroute's hierarchy.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import (
    ConfigError,
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth, Provider


class OpenAICompatProvider(Provider):
    """Talks the OpenAI chat-completions API over pooled HTTP connections."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        models: list[ModelConfig],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, models, transport=transport)
        if not config.base_url:
            raise ConfigError(
                f"providers.{name}.base_url is required for kind 'openai' "
                f"(e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1)"
            )
        headers = {"content-type": "application/json", **config.headers}
        key = config.api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        try:
            response = await self._client.post("/chat/completions", content=orjson.dumps(body))
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"upstream {self.name} returned a body that is not JSON "
                f"(status {response.status_code})"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamError(f"upstream {self.name} returned JSON that is not an object")
        return data

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        request = self._client.build_request(
            "POST", "/chat/completions", content=orjson.dumps(body)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        try:
            if response.status_code >= 400:
                raise self._status_error(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": keep-alive"), event names
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamError(
                        f"upstream {self.name} sent a stream event that is not JSON"
                    ) from None
                if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                    raise UpstreamError(f"upstream {self.name} failed mid-stream: {chunk['error']}")
                yield chunk
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e
        finally:
            await response.aclose()

    async def health(self, model: ModelConfig) -> ModelHealth:
        try:
            response = await self._client.get("/models", timeout=2.0)
        except httpx.HTTPError as e:
            return ModelHealth(False, str(self._transport_error(e)))
        if response.status_code == 401 or response.status_code == 403:
            return ModelHealth(
                False, f"upstream {self.name} refused the API key ({response.status_code})"
            )
        if response.status_code >= 500:
            return ModelHealth(False, f"upstream {self.name} answered {response.status_code}")
        return ModelHealth(True)

    def _transport_error(self, e: httpx.HTTPError) -> UpstreamError:
        where = f"upstream {self.name} ({self.config.base_url})"
        if isinstance(e, httpx.TimeoutException):
            if isinstance(e, httpx.ConnectTimeout):
                return UpstreamUnreachable(f"{where} did not accept a connection in time")
            return UpstreamTimeout(f"{where} did not answer within {self.config.timeout_s:g}s")
        if isinstance(e, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError):
            return UpstreamUnreachable(f"{where} is unreachable: {e.__class__.__name__}: {e}")
        return UpstreamError(f"{where} failed: {e.__class__.__name__}: {e}")

    def _status_error(self, status: int, content: bytes) -> UpstreamError:
        message = _error_message(content) or f"status {status}"
        text = f"upstream {self.name} answered {status}: {message}"
        if status == 429:
            return RateLimited(text)
        if status == 408:
            return UpstreamTimeout(text)
        if 400 <= status < 500:
            return UpstreamRejected(text, status_code=status)
        return UpstreamError(text)


def _error_message(content: bytes) -> str | None:
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = content.decode("utf-8", "replace").strip()
        return text[:300] or None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return None


PROVIDERS.add(OpenAICompatProvider.kind, OpenAICompatProvider)
