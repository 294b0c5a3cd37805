"""Any spelling of a model resolves to one canonical model and says which endpoint."""

from __future__ import annotations

import pytest

from polyroute.catalog import AmbiguousModel, Catalog, bundled_catalog, resolve
from polyroute.errors import ModelNotFound, PolyrouteError


def test_bare_id_selects_the_default_first_party_endpoint(hub: Catalog) -> None:
    found = resolve(hub, "gpt-4o")
    assert found.model.id == "gpt-4o"
    assert found.endpoint is not None
    assert (found.endpoint.provider, found.endpoint.upstream_id) == ("openai", "gpt-4o")


def test_dated_snapshot_resolves_to_the_canonical_model(hub: Catalog) -> None:
    found = resolve(hub, "gpt-4o-2024-08-06")
    assert found.model.id == "gpt-4o"
    assert found.provider == "openai"


def test_provider_prefix_selects_that_providers_endpoint(hub: Catalog) -> None:
    assert resolve(hub, "openai/gpt-4o").provider == "openai"
    azure = resolve(hub, "azure/gpt-4o")
    assert azure.model.id == "gpt-4o"
    assert azure.provider == "azure"
    assert azure.endpoint is not None and azure.endpoint.prices.input == 2.75
    assert resolve(hub, "azure/gpt-4o-2024-08-06").provider == "azure"


def test_prefix_works_with_any_spelling_after_it(hub: Catalog) -> None:
    found = resolve(hub, "groq/llama-3.3-70b-instruct")
    assert found.model.id == "llama-3.3-70b"
    assert found.endpoint is not None
    assert found.endpoint.upstream_id == "llama-3.3-70b-versatile"


def test_provider_prefixes_accept_common_spellings(hub: Catalog) -> None:
    found = resolve(hub, "together/llama-3.3-70b")
    assert (found.model.id, found.provider) == ("llama-3.3-70b", "together_ai")


def test_an_upstream_id_selects_its_endpoint(hub: Catalog) -> None:
    found = resolve(hub, "llama-3.3-70b-versatile")
    assert (found.model.id, found.provider) == ("llama-3.3-70b", "groq")


def test_matching_ignores_case_and_spaces(hub: Catalog) -> None:
    found = resolve(hub, "  Meta-Llama/Llama-3.3-70B-INSTRUCT-Turbo ")
    assert (found.model.id, found.provider) == ("llama-3.3-70b", "together_ai")


def test_provider_argument_picks_the_endpoint(hub: Catalog) -> None:
    assert resolve(hub, "gpt-4o", provider="azure").provider == "azure"
    with pytest.raises(ModelNotFound, match="not offered by provider 'groq'"):
        resolve(hub, "gpt-4o", provider="groq")


def test_ambiguous_name_lists_the_candidates(hub: Catalog) -> None:
    with pytest.raises(AmbiguousModel) as info:
        resolve(hub, "llama-70b")
    assert info.value.candidates == ["llama-3.1-70b", "llama-3.3-70b"]
    assert "llama-3.1-70b, llama-3.3-70b" in info.value.message
    assert isinstance(info.value, PolyrouteError)


def test_a_provider_prefix_settles_an_ambiguity(hub: Catalog) -> None:
    assert resolve(hub, "together_ai/llama-70b").model.id == "llama-3.3-70b"


def test_unknown_name_raises_model_not_found_with_suggestions(hub: Catalog) -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve(hub, "gpt-4")
    assert "no model named 'gpt-4'" in info.value.message
    assert "did you mean: gpt-4o" in info.value.message


def test_unknown_provider_prefix_is_not_found(hub: Catalog) -> None:
    with pytest.raises(ModelNotFound):
        resolve(hub, "nowhere/gpt-4o")
    with pytest.raises(ModelNotFound, match="not offered by provider 'groq'"):
        resolve(hub, "groq/gpt-4o")


# The bundled catalog, generated from LiteLLM: the names the issue quotes.


@pytest.mark.parametrize("name", ["gpt-4o", "gpt-4o-2024-08-06", "openai/gpt-4o", "GPT-4o"])
def test_bundled_gpt_4o_spellings_are_one_model(name: str) -> None:
    found = resolve(bundled_catalog(), name)
    assert found.model.id == "gpt-4o"
    assert found.model.creator == "openai"
    assert found.provider == "openai"


def test_bundled_azure_prefix_selects_azure() -> None:
    found = resolve(bundled_catalog(), "azure/gpt-4o")
    assert (found.model.id, found.provider) == ("gpt-4o", "azure")


def test_bundled_hosts_of_one_llama_are_one_model() -> None:
    catalog = bundled_catalog()
    fireworks = resolve(catalog, "fireworks_ai/accounts/fireworks/models/llama-v3p3-70b-instruct")
    bedrock = resolve(catalog, "meta.llama3-3-70b-instruct-v1:0")
    assert fireworks.model.id == bedrock.model.id == "llama-3.3-70b"
    assert (fireworks.provider, bedrock.provider) == ("fireworks_ai", "bedrock")


@pytest.mark.parametrize(
    ("name", "creator", "provider"),
    [
        ("claude-sonnet-4-5", "anthropic", "anthropic"),
        ("gemini-2.5-pro", "google", "gemini"),
        ("mistral-large", "mistral", "mistral"),
        ("deepseek-v3.2", "deepseek", "deepseek"),
    ],
)
def test_bundled_first_party_is_the_default(name: str, creator: str, provider: str) -> None:
    found = resolve(bundled_catalog(), name)
    assert (found.model.creator, found.provider) == (creator, provider)
