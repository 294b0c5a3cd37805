"""Configuration: validated YAML whose errors name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyroute.config import default_config, load_config
from polyroute.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "polyroute.yaml"
    p.write_text(text)
    return p


def test_default_config_serves_the_local_models() -> None:
    cfg = default_config()
    assert [m.name for m in cfg.models] == ["smollm2-135m", "qwen2.5-coder-0.5b"]
    assert cfg.providers["local"].kind == "llama_cpp"
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8000


def test_a_remote_upstream_beside_local_models(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """
providers:
  openai: {api: openai, base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
  local: {api: llama_cpp}
models:
  - {name: gpt-4o-mini, provider: openai, input_price: 0.15, output_price: 0.6}
  - {name: smollm2-135m, provider: local, source: smollm2-135m}
""",
        )
    )
    assert cfg.model("gpt-4o-mini") is not None
    assert cfg.model("gpt-4o-mini").target == "gpt-4o-mini"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("models: [{name: a, provider: nowhere}]", "provider 'nowhere' is not defined"),
        (
            "providers: {p: {api: openai, base_url: x, colour: red}}",
            "providers.p.colour: unknown field",
        ),
        ("server: {port: 99999}", "server.port"),
        (
            "providers: {p: {api: openai}}\nmodels: [{name: a, provider: p}, {name: a, provider: p}]",
            "already used",
        ),
        ("[1, 2]", "mapping at the top level"),
        ("models: [unclosed", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert needle in e.value.message


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/polyroute.yaml")


def test_missing_api_key_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polyroute.providers.pool import ProviderPool

    monkeypatch.delenv("POLYROUTE_TEST_MISSING_KEY", raising=False)
    cfg = load_config(
        write(
            tmp_path,
            """
providers: {p: {api: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: POLYROUTE_TEST_MISSING_KEY}}
models: [{name: a, provider: p}]
""",
        )
    )
    with pytest.raises(ConfigError, match="POLYROUTE_TEST_MISSING_KEY is not set"):
        ProviderPool(cfg)


def test_unknown_provider_api_lists_the_known_ones_when_the_file_is_loaded(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "providers: {p: {api: telepathy}}\nmodels: [{name: a, provider: p}]")
    with pytest.raises(
        ConfigError,
        match=r"providers.p.api: unknown providers 'telepathy'; known: anthropic, azure, "
        r"engine, gemini, llama_cpp, openai",
    ):
        load_config(path)
