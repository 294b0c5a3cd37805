"""The model hub's data: models, the endpoints that serve them, and where the data came from.

A *model* (``gpt-4o``, ``claude-sonnet-4-5``, ``llama-3.3-70b``) is what a creator trained; it
has a canonical id, aliases, a context window and capabilities. Each *endpoint* is one
provider serving that model under its own upstream id, with its own prices, limits and API
style. A model's first endpoint is its default: the one a bare name selects.

Every class forbids unknown fields; :mod:`polyroute.catalog.load` turns validation errors
into messages that name the model, the endpoint and the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

#: What a model can do, as the router asks for it.
Capability = Literal[
    "audio_input",
    "audio_output",
    "computer_use",
    "json_mode",
    "pdf_input",
    "prompt_caching",
    "reasoning",
    "tools",
    "video_input",
    "vision",
    "web_search",
]

#: How a client talks to an endpoint.
ApiStyle = Literal[
    "anthropic",  # Anthropic messages API
    "bedrock_converse",  # AWS Bedrock Converse API
    "bedrock_invoke",  # AWS Bedrock InvokeModel with the vendor's own body
    "gemini",  # Google AI Studio (generativelanguage) API
    "openai",  # OpenAI chat completions, or a server compatible with it
    "vertex",  # Google Vertex AI
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceTier(_Strict):
    """The prices of a request whose prompt is longer than ``above_input_tokens``.

    As the vendors bill long prompts (Gemini 2.5 Pro, Claude's 1M context, GPT-5 above
    272k): the *whole* request is billed at the tier's prices, not only the tokens past the
    threshold. A price the tier leaves out (None) is the one below it."""

    above_input_tokens: int = Field(
        gt=0, description="The tier applies when the prompt has more tokens than this."
    )
    input: float | None = Field(None, ge=0, description="USD per million prompt tokens.")
    output: float | None = Field(None, ge=0, description="USD per million completion tokens.")
    cached_input: float | None = Field(
        None, ge=0, description="USD per million prompt tokens read from the prompt cache."
    )
    cache_write: float | None = Field(
        None, ge=0, description="USD per million prompt tokens written to the prompt cache."
    )


class Prices(_Strict):
    """USD per million tokens; ``None`` means *not known*, which is never treated as $0."""

    input: float | None = Field(None, ge=0)
    output: float | None = Field(None, ge=0)
    #: Prompt tokens read from the provider's cache; when unknown they bill at ``input``.
    cached_input: float | None = Field(None, ge=0)
    #: Prompt tokens written to the provider's cache (Anthropic bills them above ``input``);
    #: when unknown they bill at ``input``, as providers without a write surcharge do.
    cache_write: float | None = Field(None, ge=0)
    #: Dearer prices for long prompts, by ascending threshold (none: one price at any length).
    tiers: tuple[PriceTier, ...] = ()

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers: tuple[PriceTier, ...]) -> tuple[PriceTier, ...]:
        thresholds = [t.above_input_tokens for t in tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError(f"tiers must have ascending, distinct thresholds, got {thresholds}")
        return tiers

    @property
    def known(self) -> bool:
        """Whether a request's cost can be computed (input and output prices both known)."""
        return self.input is not None and self.output is not None

    def at(self, prompt_tokens: int) -> Prices:
        """The flat prices a request with ``prompt_tokens`` prompt tokens bills at."""
        prices = self
        for tier in self.tiers:
            if prompt_tokens <= tier.above_input_tokens:
                break
            prices = Prices(
                input=_or(tier.input, prices.input),
                output=_or(tier.output, prices.output),
                cached_input=_or(tier.cached_input, prices.cached_input),
                cache_write=_or(tier.cache_write, prices.cache_write),
            )
        return prices


def _or(value: float | None, below: float | None) -> float | None:
    return below if value is None else value


class Limits(_Strict):
    """What one endpoint accepts; ``None`` where the provider does not say."""

    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    #: Requests and tokens per minute, at the provider's default tier.
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)


class Endpoint(_Strict):
    """One provider serving one model."""

    #: Who serves it: ``openai``, ``azure``, ``bedrock``, ``together_ai``, ``local``, ...
    provider: str = Field(min_length=1)
    #: The model's name in requests to this provider.
    upstream_id: str = Field(min_length=1)
    #: Other names this provider serves the model under on the same terms
    #: (dated snapshots, regional variants, the importer's prefixed keys).
    aliases: list[str] = Field(default_factory=list)
    api_style: ApiStyle = "openai"
    prices: Prices = Field(default_factory=Prices)
    limits: Limits = Field(default_factory=Limits)
    #: The day the provider stops serving it, when announced.
    deprecation_date: dt.date | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies an endpoint within its model (user files merge on it)."""
        return self.provider, self.upstream_id

    @property
    def names(self) -> list[str]:
        return [self.upstream_id, *self.aliases]


class Model(_Strict):
    """A model, independent of who serves it."""

    #: Canonical id: lower case, no provider prefix, no date.
    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._:/@+-]*$")
    #: A line of related models, e.g. ``gpt-4o`` for ``gpt-4o-mini``, ``claude-sonnet``.
    family: str | None = None
    #: Who trained it: ``openai``, ``anthropic``, ``google``, ``meta``, ...
    creator: str | None = None
    #: Bare names that mean this model (dated snapshots, other spellings).
    aliases: list[str] = Field(default_factory=list)
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    capabilities: list[Capability] = Field(default_factory=list)
    #: What the source says outright the model cannot do (routing keeps requests that need
    #: it away). A capability in neither list is unknown: the source does not say.
    lacks: list[Capability] = Field(default_factory=list)
    #: Benchmark name → score in [0, 100], where known.
    benchmarks: dict[str, float] = Field(default_factory=dict)
    #: Who serves it; the first is the default.
    endpoints: list[Endpoint] = Field(default_factory=list)

    @field_validator("benchmarks")
    @classmethod
    def _scores_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for name, score in value.items():
            if not 0 <= score <= 100:
                raise ValueError(f"score for {name!r} must be between 0 and 100, not {score}")
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoints_unique(cls, value: list[Endpoint]) -> list[Endpoint]:
        seen: set[tuple[str, str]] = set()
        for endpoint in value:
            if endpoint.key in seen:
                provider, upstream = endpoint.key
                raise ValueError(f"endpoint {provider}/{upstream} is listed twice")
            seen.add(endpoint.key)
        return value

    @property
    def default_endpoint(self) -> Endpoint | None:
        return self.endpoints[0] if self.endpoints else None

    def endpoints_at(self, provider: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.provider == provider]


class Provenance(_Strict):
    """Where (part of) a catalog came from."""

    source: str
    version: str | None = None
    licence: str | None = None
    url: str | None = None
    generated_at: dt.date | None = None


class Catalog(_Strict):
    """The model hub: every known model with its endpoints, and the data's provenance."""

    schema_version: Literal[1] = 1
    sources: list[Provenance] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)

    # Built on first use by polyroute.catalog.resolve; not part of the data.
    _index: dict[str, dict[int, int | None]] | None = PrivateAttr(default=None)
    _by_id: dict[str, Model] | None = PrivateAttr(default=None)
    _providers: list[str] | None = PrivateAttr(default=None)

    @field_validator("models")
    @classmethod
    def _ids_unique(cls, value: list[Model]) -> list[Model]:
        seen: set[str] = set()
        for model in value:
            if model.id in seen:
                raise ValueError(f"model {model.id!r} is listed twice")
            seen.add(model.id)
        return value

    def get(self, model_id: str) -> Model | None:
        """The model with this canonical id (exact), or ``None``; see ``resolve`` for names."""
        if self._by_id is None:
            self._by_id = {m.id: m for m in self.models}
        return self._by_id.get(model_id)

    @property
    def providers(self) -> list[str]:
        """Every provider some endpoint names, sorted."""
        if self._providers is None:
            self._providers = sorted({e.provider for m in self.models for e in m.endpoints})
        return self._providers
