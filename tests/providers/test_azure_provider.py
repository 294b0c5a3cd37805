"""The ``azure`` provider: OpenAI's API at Azure's deployment URLs, with an ``api-key`` header.

Azure's wire protocol is OpenAI's, which the OpenAI-compatible provider's own tests cover;
what differs is the URL and the key header, checked here at the transport seam.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from polyroute.config import Config
from polyroute.gateway.embeddings import EmbeddingsService
from polyroute.providers.azure import DEFAULT_API_VERSION, AzureOpenAIProvider
from polyroute.providers.pool import ProviderPool

ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}  # fmt: skip


def config(**provider: object) -> Config:
    return Config.model_validate(
        {
            "providers": {"az": {"api": "azure", "base_url": "https://res.openai.azure.com",
                                 "api_key_env": "FAKE_AZURE_KEY", **provider}},
            "models": [{"name": "gpt-4o", "provider": "az", "upstream_model": "my-gpt4o"}],
        }
    )  # fmt: skip


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    monkeypatch.setenv("FAKE_AZURE_KEY", "azure-secret")
    return []


def transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(200, json=ANSWER)

    return httpx.MockTransport(handle)


async def test_chat_goes_to_the_deployment_url_with_api_key(seen: list[httpx.Request]) -> None:
    cfg = config()
    provider = AzureOpenAIProvider("az", cfg.providers["az"], cfg.models, transport=transport(seen))
    model = cfg.models[0]
    answer = await provider.chat(
        model, {"model": model.target, "messages": [{"role": "user", "content": "x"}]}
    )
    assert answer["choices"][0]["message"]["content"] == "hi"
    request = seen[-1]
    assert str(request.url) == (
        "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions"
        f"?api-version={DEFAULT_API_VERSION}"
    )
    assert request.headers["api-key"] == "azure-secret"
    assert "authorization" not in request.headers
    assert orjson.loads(request.content)["messages"][0]["content"] == "x"
    assert (await provider.health(model)).ready
    assert seen[-1].url.path == "/openai/models"
    await provider.aclose()


async def test_api_version_from_the_config(seen: list[httpx.Request]) -> None:
    cfg = config(api_version="2025-01-01-preview", base_url="https://res.openai.azure.com/openai/")
    provider = AzureOpenAIProvider("az", cfg.providers["az"], cfg.models, transport=transport(seen))
    await provider.chat(
        cfg.models[0], {"model": "my-gpt4o", "messages": [{"role": "user", "content": "x"}]}
    )
    assert seen[-1].url.params["api-version"] == "2025-01-01-preview"
    assert seen[-1].url.path == "/openai/deployments/my-gpt4o/chat/completions"
    await provider.aclose()


async def test_embeddings_go_to_the_deployments_embeddings_url(seen: list[httpx.Request]) -> None:
    cfg = config()
    mock = transport(seen)
    service = EmbeddingsService(cfg, ProviderPool(cfg, transport=mock), mock)
    target = service.pool.resolve("gpt-4o")
    await service._forward(target, {"model": "gpt-4o", "input": "x"})
    assert seen[-1].url.path == "/openai/deployments/my-gpt4o/embeddings"
    assert seen[-1].headers["api-key"] == "azure-secret"
    assert orjson.loads(seen[-1].content)["model"] == "my-gpt4o"
    await service.aclose()
