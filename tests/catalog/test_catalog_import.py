"""The LiteLLM importer: canonical ids, grouping into endpoints, unit conversion, rejects."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from polyroute.catalog import resolve
from polyroute.catalog.litellm_import import ImportReport, convert
from polyroute.catalog.naming import canonical_id, creator_of, family_of, upstream_id

TODAY = dt.date(2026, 1, 1)


def _chat(provider: str, i: float = 2.5e-06, o: float = 1e-05, **more: Any) -> dict[str, Any]:
    return {
        "litellm_provider": provider,
        "mode": "chat",
        "input_cost_per_token": i,
        "output_cost_per_token": o,
        "max_input_tokens": 128000,
        "max_output_tokens": 16384,
        **more,
    }


RAW: dict[str, Any] = {
    "sample_spec": {"mode": "one of: chat, embedding, ..."},
    "gpt-4o": _chat("openai", cache_read_input_token_cost=1.25e-06, supports_function_calling=True),
    "gpt-4o-2024-08-06": _chat("openai", cache_read_input_token_cost=1.25e-06),
    "gpt-4o-2024-05-13": _chat("openai", i=5e-06, o=1.5e-05, supports_vision=False),
    "azure/gpt-4o": _chat("azure", supports_vision=True),
    "azure/eu/gpt-4o": _chat("azure", i=2.75e-06),
    "ft:gpt-4o-2024-08-06": _chat("openai"),
    "claude-3-haiku-20240307": _chat("anthropic", deprecation_date="2025-03-01"),
    "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo": _chat("together_ai", 8.8e-07, 8.8e-07),
    "groq/llama-3.3-70b-versatile": _chat(
        "groq", 5.9e-07, 7.9e-07, supports_vision=False, supports_response_schema=False
    ),
    "meta.llama3-3-70b-instruct-v1:0": _chat("bedrock_converse", 7.2e-07, 7.2e-07),
    "llama-api-free": {"litellm_provider": "meta_llama", "mode": "chat"},
    "broken-price": _chat("openai", i=-1.0),
    "broken-window": _chat("openai", max_input_tokens="lots"),
    "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding"},
    "some-host/model": _chat("not_a_provider_we_cover"),
}


@pytest.fixture(scope="module")
def report() -> ImportReport:
    return convert(RAW, version="9.9.9", today=TODAY)


def test_spellings_of_one_model_become_one_model_with_endpoints(report: ImportReport) -> None:
    gpt = report.catalog.get("gpt-4o")
    assert gpt is not None
    assert [(e.provider, e.upstream_id) for e in gpt.endpoints] == [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-2024-05-13"),  # its own price: its own endpoint
        ("openai", "gpt-4o-2024-08-06"),  # same terms, but a dated snapshot is its own model
        ("azure", "gpt-4o"),
    ]
    first = gpt.endpoints[0]
    assert first.aliases == []
    assert (first.prices.input, first.prices.output, first.prices.cached_input) == (
        2.5,
        10.0,
        1.25,
    )
    assert gpt.capabilities == ["tools", "vision"]  # any host's flags count
    assert gpt.lacks == []  # one host's "no vision" does not outweigh another's "yes"
    assert (gpt.creator, gpt.family, gpt.context_window) == ("openai", "gpt-4o", 128000)


def test_an_explicit_no_is_a_lack_and_silence_is_unknown(report: ImportReport) -> None:
    llama = report.catalog.get("llama-3.3-70b")
    assert llama is not None
    # No response schema is not "no JSON mode"; nobody said anything about tools.
    assert (llama.capabilities, llama.lacks) == ([], ["vision"])


def test_the_three_names_of_the_issue_resolve_to_one_model(report: ImportReport) -> None:
    for name in ("gpt-4o-2024-08-06", "openai/gpt-4o", "gpt-4o"):
        assert resolve(report.catalog, name).model.id == "gpt-4o"
    snapshot = resolve(report.catalog, "gpt-4o-2024-05-13").endpoint
    assert snapshot is not None and snapshot.prices.input == 5.0
    # A snapshot's name selects that snapshot, never another one at the same price.
    dated = resolve(report.catalog, "gpt-4o-2024-08-06").endpoint
    assert dated is not None and dated.upstream_id == "gpt-4o-2024-08-06"


def test_llama_hosts_share_one_model(report: ImportReport) -> None:
    llama = report.catalog.get("llama-3.3-70b")
    assert llama is not None and llama.creator == "meta"
    assert [e.provider for e in llama.endpoints] == ["together_ai", "groq", "bedrock"]
    assert llama.endpoints[2].api_style == "bedrock_converse"
    assert "llama3-3-70b-instruct" in llama.aliases


def test_provenance_is_kept(report: ImportReport) -> None:
    (source,) = report.catalog.sources
    assert (source.version, source.licence, source.generated_at) == ("9.9.9", "MIT", TODAY)


def test_rejects_carry_reasons_naming_the_field(report: ImportReport) -> None:
    reasons = dict(report.rejected)
    assert reasons["broken-price"].startswith("input_cost_per_token: Input should be greater")
    assert reasons["broken-window"].startswith("max_input_tokens: Input should be a valid integer")
    assert reasons["claude-3-haiku-20240307"] == "retired on 2025-03-01"
    assert "fine-tuning" in reasons["ft:gpt-4o-2024-08-06"]
    assert "data-zone" in reasons["azure/eu/gpt-4o"]
    assert reasons["llama-api-free"] == "neither a price nor a context window"
    assert report.skipped == {"mode 'embedding' is not chat": 1, "provider not covered": 1}


def test_an_entry_without_price_is_kept_with_unknown_price() -> None:
    raw = {"lab/x": {"litellm_provider": "together_ai", "mode": "chat", "max_input_tokens": 8}}
    (model,) = convert(raw, version="1", today=TODAY).catalog.models
    assert model.endpoints[0].prices.input is None
    assert not model.endpoints[0].prices.known


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4-turbo", "gpt-4-turbo"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("vertex_ai/claude-3-5-haiku@20241022", "claude-3-5-haiku"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
        ("gemini/gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash-preview"),
        ("mistral/mistral-large-latest", "mistral-large"),
        ("deepseek.r1-v1:0", "deepseek-r1"),
        ("together_ai/deepseek-ai/DeepSeek-R1-0528", "deepseek-r1"),
        ("fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct", "llama-3.1-8b"),
        ("together_ai/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "llama-3.1-8b"),
        ("cerebras/llama3.1-8b", "llama-3.1-8b"),
        ("vertex_ai/meta/llama-4-scout-17b-16e-instruct-maas", "llama-4-scout"),
        ("us.meta.llama4-scout-17b-instruct-v1:0", "llama-4-scout"),
        ("groq/openai/gpt-oss-120b", "gpt-oss-120b"),
        ("fireworks_ai/accounts/fireworks/models/qwen2p5-coder-32b", "qwen2.5-coder-32b"),
    ],
)  # fmt: skip
def test_canonical_ids(key: str, expected: str) -> None:
    assert canonical_id(upstream_id(key)) == expected


def test_upstream_id_drops_only_litellm_routing_prefixes() -> None:
    assert upstream_id("azure/gpt-4o") == "gpt-4o"
    assert upstream_id("together_ai/meta-llama/Llama-3.3-70B") == "meta-llama/Llama-3.3-70B"
    assert upstream_id("meta-llama/Llama-3.3-70B") == "meta-llama/Llama-3.3-70B"


@pytest.mark.parametrize(
    ("model_id", "orgs", "creator", "family"),
    [
        ("gpt-4o-mini", (), "openai", "gpt-4o"),
        ("o3-mini", (), "openai", "o3"),
        ("claude-opus-4-1", (), "anthropic", "claude-opus"),
        ("gemini-2.5-pro", (), "google", "gemini-2.5"),
        ("llama-3.1-nemotron-70b", (), "nvidia", "llama-3.1"),
        ("hermes-3-llama-3.1-70b", ("nousresearch",), None, "hermes-3"),
        ("olmo-2", ("meta-llama",), "meta", "olmo-2"),
    ],
)
def test_creator_and_family(
    model_id: str, orgs: tuple[str, ...], creator: str | None, family: str
) -> None:
    assert creator_of(model_id, orgs) == creator
    assert family_of(model_id) == family


def test_a_recently_retired_name_still_resolves_and_says_so() -> None:
    """DeepSeek's ``deepseek-chat`` is past the date LiteLLM lists and still served."""
    entry = {"litellm_provider": "deepseek", "mode": "chat", "input_cost_per_token": 2.8e-7}
    recent = {**entry, "deprecation_date": "2025-10-01"}
    old = {**entry, "deprecation_date": "2025-03-01"}
    report = convert(
        {"deepseek/deepseek-chat": recent, "deepseek/deepseek-old": old}, version="1", today=TODAY
    )
    model = resolve(report.catalog, "deepseek-chat").model
    assert model.endpoints[0].deprecation_date == dt.date(2025, 10, 1)
    assert dict(report.rejected) == {"deepseek/deepseek-old": "retired on 2025-03-01"}
