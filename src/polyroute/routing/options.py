"""The options of each built-in router kind: what a ``routers.NAME`` entry may hold.

One pydantic model per kind, each field described; the gateway validates an entry with its
kind's model once, at start-up (errors name ``routers.NAME.FIELD``), and docs/config.md is
generated from these. Values are strict: YAML's ``"0.5"`` or ``true`` is not a number.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from polyroute.options import Options


class RouterOptions(Options):
    """Every router entry: ``kind`` plus the kind's options."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    models: list[str] | dict[str, str] | None = Field(
        None,
        description="The served models it routes among (default: every model it can score); "
        "a learned router's mapping ``{trained name: served name}`` binds names that differ "
        "(checked by the gateway, docs/routers.md).",
    )


class RandomOptions(RouterOptions):
    """``kind: random``: a uniform choice."""

    seed: int | None = Field(None, description="Makes the sequence of choices repeatable.")


class WrrOptions(RouterOptions):
    """``kind: wrr``: weighted round robin."""

    weights: dict[str, float] = Field(
        description="model → a positive weight; requests go to each in proportion."
    )


class LearnedOptions(RouterOptions):
    """``kind: knn``, ``mlp`` or ``mf``: a router trained by ``polyroute train``."""

    path: str = Field(
        description="The trained router's directory (``polyroute train --out``), or "
        "``builtin:NAME``."
    )
    lam: float | None = Field(
        None,
        alias="lambda",
        ge=0,
        description="Quality points one USD of a request is worth (overrides the stored knob).",
    )
    max_cost_fraction: float | None = Field(
        None, ge=0, le=1, description="Spend at most this share of the most expensive model's cost."
    )
    min_quality_fraction: float | None = Field(
        None, ge=0, le=1, description="Keep at least this share of the best model's quality."
    )


class OnlineOptions(RouterOptions):
    """The bandits' common option (``ucb1``, ``thompson``, ``linucb``)."""

    lam: float = Field(
        0.0, alias="lambda", ge=0, description="Quality points one USD of a request is worth."
    )


class Ucb1Options(OnlineOptions):
    """``kind: ucb1``."""

    exploration: float = Field(1.0, ge=0, description="Weight of the exploration bonus.")


class ThompsonOptions(OnlineOptions):
    """``kind: thompson``."""

    seed: int | None = Field(None, description="Makes the samples repeatable.")


class LinUCBOptions(OnlineOptions):
    """``kind: linucb``: contextual, on the prompt's embedding."""

    alpha: float = Field(0.5, ge=0, description="Weight of the upper-confidence bonus.")
    dim: int | None = Field(
        32, gt=0, description="Embedding dimensions kept (a random projection); None: all."
    )
    ridge: float = Field(10.0, gt=0, description="The ridge regulariser of each arm's model.")
    seed: int = Field(0, description="Seed of the random projection.")
    baseline: float = Field(0.5, ge=0, le=1, description="The reward expected of a new arm.")
    prior: str | None = Field(
        None, description="A trained learned router's directory, used as the prior."
    )
