"""Provider ``api`` (once ``kind``) and the typed options of provider APIs and router kinds."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import polyroute.config
from polyroute.config import Config, load_config
from polyroute.errors import ConfigError
from polyroute.providers.llama_local import LlamaCppModelOptions


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "polyroute.yaml"
    path.write_text(text)
    return path


OPENAI = 'base_url: "http://127.0.0.1:9/v1"'


def test_the_old_kind_still_loads_and_says_once_how_to_write_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(polyroute.config, "_warned", set())
    path = write(
        tmp_path,
        f"providers: {{a: {{kind: openai, {OPENAI}}}, b: {{kind: openai, {OPENAI}}}}}\n"
        "models: [{name: m, provider: a}]\n",
    )
    with caplog.at_level(logging.WARNING, logger="polyroute.config"):
        first = load_config(path)
        again = load_config(path)
    assert first.providers["a"].api == again.providers["b"].api == "openai"
    warnings = [r.getMessage() for r in caplog.records if r.name == "polyroute.config"]
    assert warnings == [
        "providers: 'kind: openai' is the old spelling; write 'api: openai' instead "
        "(kind is deprecated for providers)"
    ]


def test_api_and_kind_together_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: {a: {api: openai, kind: openai}}\n")
    with pytest.raises(ConfigError, match=r"providers\.a: .*give 'api' only"):
        load_config(path)


def test_a_wrong_provider_option_names_its_path_and_the_reference(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "providers: {az: {api: azure, base_url: 'https://r.openai.azure.com', "
        "api_verison: '2025-01-01'}}\nmodels: [{name: m, provider: az}]\n",
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message.splitlines() == [
        f"invalid configuration in {path}:",
        "  providers.az.api_verison: unknown field (check its spelling; see docs/config.md "
        "for the fields)",
    ]


def test_model_options_are_those_of_the_providers_api(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"providers: {{local: {{api: llama_cpp}}, remote: {{api: openai, {OPENAI}}}}}\n"
        "models:\n"
        "  - {name: small, provider: local, source: smollm2-135m, n_ctx: lots}\n"
        "  - {name: big, provider: remote, queue_size: 3}\n",
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = e.value.message.splitlines()
    assert lines[1].startswith("  models.0.n_ctx: Input should be a valid integer")
    assert lines[2].startswith("  models.1.queue_size: unknown field")


def test_llama_cpp_model_options_are_parsed_once_and_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "providers: {local: {api: llama_cpp}}\n"
        "models: [{name: small, provider: local, source: smollm2-135m, n_ctx: 2048, "
        "queue_size: 2}]\n",
    )
    model = load_config(path).models[0]
    options = model.options
    assert isinstance(options, LlamaCppModelOptions)
    assert (options.n_ctx, options.queue_size, options.max_tokens) == (2048, 2, 512)
    assert model.options_as(LlamaCppModelOptions, "models.0") is options  # not parsed again


def test_router_options_are_checked_when_the_file_is_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"providers: {{p: {{api: openai, {OPENAI}}}}}\n"
        "models: [{name: a, provider: p}, {name: b, provider: p}]\n"
        "routers:\n"
        "  bandit: {kind: ucb1, exploration: '2', lambda: -1}\n"
        "  spread: {kind: wrr, weights: {a: 1}, wieghts: {b: 1}}\n"
        "  chance: {kind: random, models: [a, b], seed: 3}\n",
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = e.value.message.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "routers.bandit.lambda",
        "routers.bandit.exploration",
        "routers.spread.wieghts",
    ]
    assert "greater than or equal to 0" in lines[0] and "valid number" in lines[1]


def test_a_router_is_built_from_its_validated_options() -> None:
    from polyroute.gateway.routing import build_router_hub
    from polyroute.routing.online.ucb import UCB1Router

    config = Config.model_validate(
        {
            "providers": {"p": {"api": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [{"name": "a", "provider": "p"}, {"name": "b", "provider": "p"}],
            "routers": {"bandit": {"kind": "ucb1", "exploration": 2, "lambda": 0.5}},
        }
    )
    hub = build_router_hub(config)
    assert hub is not None
    router = hub.routers["bandit"]
    assert isinstance(router, UCB1Router)
    assert (router.exploration, router.lam) == (2.0, 0.5)
    bad = config.model_copy(update={"routers": {"bandit": {"kind": "ucb1", "exploration": "x"}}})
    with pytest.raises(ConfigError, match=r"routers\.bandit\.exploration: Input should be"):
        build_router_hub(bad)


def test_a_provider_takes_its_options_from_the_config() -> None:
    from polyroute.providers.azure import AzureOpenAIProvider, AzureOptions

    config = Config.model_validate(
        {
            "providers": {
                "az": {
                    "api": "azure",
                    "base_url": "https://r.openai.azure.com",
                    "api_version": "v9",
                }
            },
            "models": [{"name": "m", "provider": "az"}],
        }
    )
    provider = AzureOpenAIProvider("az", config.providers["az"], config.models)
    assert isinstance(provider.options, AzureOptions) and provider.options.api_version == "v9"
    assert "api-version=v9" in str(provider.deployment_url("m"))
