"""``POST /v1/embeddings``: OpenAI's embeddings API, passed to the model the client names.

A configured model on an OpenAI-compatible provider (kind ``openai``, or ``azure`` at its
deployment URL) gets the request as it came, with the upstream's model name. Unless a
configured model takes the name, ``all-MiniLM-L6-v2`` (also ``minilm``) is served locally by
the sentence encoder the routers ship with (384 dimensions), in a worker thread.
Embeddings are not recorded in the store: it holds chat traces.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from polyroute.config import Config
from polyroute.errors import InvalidRequest, ModelNotFound
from polyroute.gateway.protocol import read_json_body
from polyroute.providers.azure import AzureOpenAIProvider
from polyroute.providers.base import JSON
from polyroute.providers.http_json import JsonHttp
from polyroute.providers.pool import ProviderPool, Target

#: Names the built-in encoder answers to.
LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_NAMES = frozenset({LOCAL_MODEL, "minilm", "sentence-transformers/all-MiniLM-L6-v2"})
_KINDS = ("openai", "azure")


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str = "float"
    dimensions: int | None = Field(None, ge=1)


class EmbeddingsService:
    """Forwards embeddings requests, or answers them with the local encoder."""

    def __init__(
        self, config: Config, pool: ProviderPool, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.config = config
        self.pool = pool
        self._transport = transport
        self._http: dict[str, JsonHttp] = {}

    async def aclose(self) -> None:
        for http in self._http.values():
            await http.aclose()

    async def __call__(self, request: Request) -> Response:
        body = await read_json_body(request, self.config.server.max_body_bytes)
        try:
            req = EmbeddingsRequest.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(
                f"Invalid value for '{where}': {first['msg']}", param=where
            ) from None
        try:
            target = self.pool.resolve(req.model)
        except ModelNotFound:
            if req.model not in LOCAL_NAMES:
                raise
            return _json(await asyncio.to_thread(_local, req))
        return _json(await self._forward(target, body))

    async def _forward(self, target: Target, body: JSON) -> JSON:
        provider = target.provider.config
        if provider.api not in _KINDS:
            raise InvalidRequest(
                f"The model '{target.model.name}' is served by a provider of kind "
                f"{provider.api!r}, which has no embeddings API here; use a model on an "
                "OpenAI-compatible provider",
                param="model",
            )
        http = self._http.get(target.provider.name)
        if http is None:
            key = provider.api_key()
            if provider.api == "azure":
                headers = {"api-key": key} if key else {}
            else:
                headers = {"authorization": f"Bearer {key}"} if key else {}
            http = JsonHttp(target.provider.name, provider, headers, self._transport)
            self._http[target.provider.name] = http
        return await http.post_json(_url(target), {**body, "model": target.model.target})


def _url(target: Target) -> str:
    config = target.provider.config
    assert config.base_url is not None  # both kinds refuse a provider without one
    base = config.base_url.rstrip("/")
    if config.api == "azure":
        assert isinstance(target.provider, AzureOpenAIProvider)
        chat = target.provider.deployment_url(target.model.target)
        return str(chat).replace("/chat/completions?", "/embeddings?")
    return f"{base}/embeddings"


def _local(req: EmbeddingsRequest) -> JSON:
    from polyroute.embeddings.registry import get_embedder

    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            f"{LOCAL_MODEL} takes text input (a string or a list of strings)", param="input"
        )
    strings: list[str] = [str(t) for t in texts]
    if req.dimensions is not None and req.dimensions != 384:
        raise InvalidRequest(f"{LOCAL_MODEL} has 384 dimensions", param="dimensions")
    embedder = get_embedder("minilm")
    vectors = np.asarray(embedder.embed(strings), dtype=np.float32)
    tokens = int(np.sum(embedder.count_tokens(strings)))
    data: list[JSON] = []
    for i, vector in enumerate(vectors):
        embedding: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if req.encoding_format == "base64"
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": LOCAL_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _json(data: JSON) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")
