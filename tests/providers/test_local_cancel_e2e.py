"""The real llama.cpp engine stops generating when its request is cancelled, and caps output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.providers.llama_local import LlamaCppProvider

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
USER = [{"role": "user", "content": "Write a very long story about a dragon."}]


@pytest.fixture
async def smollm() -> AsyncIterator[tuple[LlamaCppProvider, ModelConfig]]:
    model = ModelConfig(
        name="smollm2-135m", provider="local", source="smollm2-135m", n_ctx=2048, max_tokens=8
    )
    provider = LlamaCppProvider("local", ProviderConfig(api="llama_cpp"), [model])
    await provider.start()
    if provider._local[model.name].llama is None:
        pytest.skip(f"local model not installed: {provider._local[model.name].error}")
    yield provider, model
    await provider.aclose()


async def test_no_max_tokens_means_the_model_cap(
    smollm: tuple[LlamaCppProvider, ModelConfig],
) -> None:
    provider, model = smollm
    out = await provider.chat(model, {"messages": USER, "temperature": 0})
    assert 0 < out["usage"]["completion_tokens"] <= 8
    assert out["choices"][0]["finish_reason"] == "length"


async def test_closing_a_stream_stops_the_generation(
    smollm: tuple[LlamaCppProvider, ModelConfig],
) -> None:
    provider, model = smollm
    local = provider._local[model.name]
    chunks = provider.chat_stream(model, {"messages": USER, "max_tokens": 1500, "temperature": 0})
    for _ in range(4):
        await anext(chunks)
    await chunks.aclose()  # what a client disconnect does
    for _ in range(500):
        if local.pending == 0:
            break
        await asyncio.sleep(0.02)
    assert local.pending == 0
    _, generated = local.llama.last_usage
    assert generated < 200  # stopped within a few tokens of the close, far short of 1500
