"""Model profiles: a family's quirks applied whoever serves it (providers/profiles.py)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from polyroute.config import Config
from polyroute.providers.anthropic_wire import to_anthropic
from polyroute.providers.base import Usage
from polyroute.providers.gemini_wire import to_gemini
from polyroute.providers.openai_compat import OpenAICompatProvider
from polyroute.providers.profiles import DEFAULT, profile_for, profile_of

USER = [{"role": "user", "content": "hi"}]
ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "family", "thinks"),
    [
        ("o3-mini", "openai-reasoning", True),
        ("openai/gpt-5-mini", "openai-reasoning", True),
        ("gpt-5-chat-latest", "default", None),
        ("gpt-4o", "default", None),
        ("claude-3-5-haiku-20241022", "claude-no-thinking", False),
        ("claude-sonnet-4-5", "claude", True),
        ("claude-opus-9", "default", None),  # a family not in the table is passed on as is
        ("models/gemini-2.5-pro", "gemini", True),
        ("gemini-2.0-flash", "gemini-no-thinking", False),
        ("deepseek-reasoner", "deepseek-reasoner", True),
        ("llama-3.3-70b", "default", None),
    ],
)
def test_families(name: str, family: str, thinks: bool | None) -> None:
    profile = profile_for(name)
    assert (profile.family, profile.thinks) == (family, thinks)


def test_an_azure_deployment_is_profiled_by_its_catalog_id() -> None:
    assert profile_of("my-deployment", None) is DEFAULT
    assert profile_of("my-deployment", "o4-mini").family == "openai-reasoning"


def test_reasoning_models_get_max_completion_tokens_and_no_sampling_parameters() -> None:
    profile = profile_for("o3")
    body = {"model": "o3", "messages": USER, "max_tokens": 50, "temperature": 0.2, "top_p": 1}
    assert profile.adapt(body) == {"model": "o3", "messages": USER, "max_completion_tokens": 50}
    assert body["max_tokens"] == 50  # the caller's body is not changed
    plain = {"model": "o3", "messages": USER}
    assert profile.adapt(plain) is plain


async def test_the_openai_provider_sends_each_model_what_its_family_accepts() -> None:
    cfg = Config.model_validate(
        {
            "providers": {"up": {"api": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [
                {"name": "thinker", "provider": "up", "upstream_model": "o4-mini"},
                {"name": "chat", "provider": "up", "upstream_model": "gpt-4o"},
            ],
        }
    )
    sent: list[dict[str, object]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content))
        return httpx.Response(200, json=ANSWER)

    provider = OpenAICompatProvider(
        "up", cfg.providers["up"], cfg.models, transport=httpx.MockTransport(handle)
    )
    for model in cfg.models:
        body = {"model": model.target, "messages": USER, "max_tokens": 9, "temperature": 0.5}
        await provider.chat(model, body)
    assert sent == [
        {"model": "o4-mini", "messages": USER, "max_completion_tokens": 9},
        {"model": "gpt-4o", "messages": USER, "max_tokens": 9, "temperature": 0.5},
    ]


def test_claude_and_gemini_that_cannot_think_get_no_thinking_config() -> None:
    ask = {"messages": USER, "max_tokens": 100, "reasoning_effort": "low"}
    assert "thinking" in to_anthropic({**ask, "model": "claude-sonnet-4-5"})
    assert "thinking" not in to_anthropic({**ask, "model": "claude-3-5-haiku-20241022"})
    config = to_gemini({**ask, "model": "gemini-2.5-flash"})["generationConfig"]
    assert "thinkingConfig" in config
    old = to_gemini({**ask, "model": "gemini-2.0-flash"})["generationConfig"]
    assert "thinkingConfig" not in old


def test_deepseeks_cache_hits_are_read_from_its_own_field() -> None:
    usage = Usage.from_openai(
        {"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 64}
    )
    assert usage is not None and usage.cached_tokens == 64
    both = {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 8},
            "prompt_cache_hit_tokens": 64}  # fmt: skip
    assert Usage.from_openai(both) == Usage(prompt_tokens=100, cached_tokens=8)
