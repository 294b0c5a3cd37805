"""Loading: the bundled data, bad entries named precisely, and a user's YAML merged on top."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import polyroute.catalog as catalog_pkg
from polyroute.catalog import (
    Catalog,
    CatalogError,
    bundled_catalog,
    load_catalog,
    parse_catalog,
    resolve,
)
from polyroute.errors import ConfigError


def _one_model(**fields: Any) -> dict[str, Any]:
    model = {"id": "m-1", "endpoints": [{"provider": "p", "upstream_id": "m-1"}]}
    model.update(fields)
    return {"models": [{"id": "ok-model"}, model]}


def test_public_api_is_pinned() -> None:
    assert catalog_pkg.__all__ == [
        "LOCAL_PRICES",
        "AmbiguousModel",
        "ApiStyle",
        "Capability",
        "Catalog",
        "CatalogError",
        "Endpoint",
        "Limits",
        "Model",
        "Prices",
        "Provenance",
        "Resolution",
        "apply_catalog",
        "bundled_catalog",
        "cost_usd",
        "load_catalog",
        "merge",
        "parse_catalog",
        "prices_of",
        "read_catalog_file",
        "require_cost_usd",
        "resolve",
        "suggestions",
    ]
    assert all(hasattr(catalog_pkg, name) for name in catalog_pkg.__all__)


def test_bundled_catalog_is_real_and_keeps_its_provenance() -> None:
    catalog = bundled_catalog()
    assert len(catalog.models) > 300
    source = catalog.sources[0]
    assert source.licence == "MIT"
    assert source.version and source.generated_at
    assert "LiteLLM" in source.source
    providers = set(catalog.providers)
    assert {"openai", "anthropic", "gemini", "mistral", "deepseek", "bedrock"} <= providers
    assert {"fireworks_ai", "together_ai", "groq"} <= providers


def test_bundled_prices_are_per_million_tokens() -> None:
    endpoint = resolve(bundled_catalog(), "gpt-4o").endpoint
    assert endpoint is not None
    assert endpoint.prices.input == 2.5  # LiteLLM says 2.5e-06 per token


def test_the_bundled_catalog_is_read_once() -> None:
    assert load_catalog() is load_catalog() is bundled_catalog()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {"endpoints": [{"provider": "p", "upstream_id": "x", "prices": {"input": -1}}]},
            "models[1] (m-1) › endpoints[0] (p/x) › prices.input: "
            "Input should be greater than or equal to 0 (got -1)",
        ),
        (
            {"context_window": "big"},
            "models[1] (m-1) › context_window: Input should be a valid integer",
        ),
        ({"colour": "red"}, "models[1] (m-1) › colour: unknown field"),
        (
            {"endpoints": [{"provider": "p", "upstream_id": "x", "limits": {"rpm": 1, "x": 2}}]},
            "models[1] (m-1) › endpoints[0] (p/x) › limits.x: unknown field",
        ),
        ({"capabilities": ["tools", "telepathy"]}, "models[1] (m-1) › capabilities[1]: Input"),
        ({"id": "Has Spaces"}, "models[1] (Has Spaces) › id: String should match pattern"),
        ({"benchmarks": {"mmlu": 140}}, "score for 'mmlu' must be between 0 and 100"),
        (
            {"endpoints": [{"provider": "p", "upstream_id": "x"}] * 2},
            "endpoint p/x is listed twice",
        ),
        ({"endpoints": [{"provider": "p"}]}, "endpoints[0] › upstream_id: Field required"),
    ],
)
def test_bad_entries_are_rejected_naming_entry_and_field(
    model: dict[str, Any], expected: str
) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(_one_model(**model), source="mine.yaml")
    assert info.value.message.startswith("invalid catalog in mine.yaml:")
    assert expected in info.value.message
    assert isinstance(info.value, ConfigError)


def test_duplicate_model_ids_are_rejected() -> None:
    with pytest.raises(CatalogError, match="model 'a' is listed twice"):
        parse_catalog({"models": [{"id": "a"}, {"id": "a"}]}, source="x")


def test_bad_json_text_is_reported() -> None:
    with pytest.raises(CatalogError, match=r"invalid catalog in data\.json"):
        parse_catalog(b'{"models": [{"id": "a", "endpoints": 3}]}', source="data.json")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_user_yaml_overrides_fields_and_adds_endpoints_and_models(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        models:
          - id: gpt-4o
            endpoints:
              - provider: openai
                upstream_id: gpt-4o
                prices: {input: 2.0}          # only this price changes
              - provider: my-proxy
                upstream_id: gpt-4o
                prices: {input: 2.6, output: 10.4}
          - id: house-model-7b
            creator: us
            context_window: 8192
            capabilities: [tools]
            benchmarks: {mmlu: 61.5}
            endpoints:
              - provider: vllm
                upstream_id: house/7b
                prices: {input: 0.05, output: 0.05}
        """,
    )
    merged = load_catalog(path)
    bundled = bundled_catalog()
    gpt = resolve(merged, "gpt-4o")
    assert gpt.endpoint is not None
    assert gpt.endpoint.prices.input == 2.0
    assert gpt.endpoint.prices.output == 10.0  # kept from the bundled entry
    assert gpt.model.capabilities == resolve(bundled, "gpt-4o").model.capabilities
    proxy = resolve(merged, "my-proxy/gpt-4o")
    assert proxy.endpoint is not None and proxy.endpoint.prices.output == 10.4
    house = resolve(merged, "house/7b")
    assert (house.model.id, house.model.benchmarks) == ("house-model-7b", {"mmlu": 61.5})
    assert len(merged.models) == len(bundled.models) + 1
    assert merged.sources[-1].source == str(path)
    assert resolve(bundled, "gpt-4o").endpoint.prices.input == 2.5  # type: ignore[union-attr]


def test_user_file_is_read_again_after_an_edit(tmp_path: Path) -> None:
    path = _write(tmp_path, "models: [{id: house-a}]\n")
    assert load_catalog(path).get("house-a") is not None
    path.write_text("models: [{id: house-b, context_window: 1000}]\n")
    merged = load_catalog(path)
    assert merged.get("house-b") is not None


def test_bad_user_file_names_the_file_entry_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "models:\n  - id: gpt-4o\n    contxt_window: 5\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in info.value.message
    assert "models[0] (gpt-4o) › contxt_window: unknown field" in info.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [("models: [", "is not valid YAML"), ("- a\n- b\n", "must hold a mapping")],
)
def test_unreadable_user_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, text))


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope.yaml")


def test_an_empty_user_file_changes_nothing(tmp_path: Path) -> None:
    merged = load_catalog(_write(tmp_path, ""))
    assert isinstance(merged, Catalog)
    assert [m.id for m in merged.models] == [m.id for m in bundled_catalog().models]
