"""Which served models each router chooses among, and how it scores each of them.

A learned router knows the names it was trained on; a user serves models under names of
their own. Binding a router to the config matches the two: the router section's ``models``
(``{trained name: served name}``, or a list of served names to route among) first, then
names that plainly mean the same model (the served name, an alias, the upstream model or the
catalog id, compared without case, vendor prefix or punctuation). A served model the router
was not trained on is scored from a prior where the router can make one (a model vector from
similar models), else the router cannot choose it. What each router can score is its
:class:`Coverage`: logged at start-up and shown on ``/health``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyroute.config import Config, ModelConfig
from polyroute.errors import ConfigError
from polyroute.routing.base import Router


@dataclass(slots=True)
class Coverage:
    """The served models one router chooses among, by how it scores them."""

    router: str
    kind: str
    #: Served models it scores from what it learned (or, for bandits, every member).
    scored: list[str] = field(default_factory=list)
    #: Served models it scores from a prior (no data on them yet).
    priors: list[str] = field(default_factory=list)
    #: Served models it cannot score: it never chooses them.
    unscored: list[str] = field(default_factory=list)
    #: Trained name → served name, where they differ.
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def members(self) -> list[str]:
        """The served models the router chooses among."""
        return [*self.scored, *self.priors]

    def warning(self) -> str | None:
        """What an operator should know about this router's coverage, if anything."""
        parts = []
        if self.unscored:
            parts.append(
                f"cannot score {', '.join(self.unscored)} and will never choose them "
                f"(map them under routers.{self.router}.models, or add them with "
                "`polyroute router add-model`)"
            )
        if self.priors:
            parts.append(
                f"scores {', '.join(self.priors)} from a prior only (no data on them yet: "
                "`polyroute router onboard` measures them)"
            )
        return f"router {self.router!r} " + "; ".join(parts) if parts else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scored": self.scored,
            "priors": self.priors,
            "unscored": self.unscored,
            "renamed": self.renamed,
            "warning": self.warning(),
        }


def _key(name: str) -> str:
    """A model name as compared across naming conventions: no case, vendor prefix, punctuation."""
    return re.sub(r"[^a-z0-9]", "", name.rsplit("/", 1)[-1].lower())


def _names_of(model: ModelConfig) -> Iterable[str]:
    yield model.name
    yield from model.aliases
    yield model.target
    if model.catalog_id:
        yield model.catalog_id


def match_names(trained: Sequence[str], served: Sequence[ModelConfig]) -> dict[str, str]:
    """``{trained name: served name}`` for the trained names some served model plainly is.

    A trained name that matches two served models, or that two trained names would share,
    stays unmatched: guessing between them would be worse than saying nothing.
    """
    by_key: dict[str, set[str]] = {}
    for model in served:
        for name in _names_of(model):
            by_key.setdefault(_key(name), set()).add(model.name)
    found: dict[str, str] = {}
    for name in trained:
        hits = by_key.get(_key(name), set())
        if len(hits) == 1:
            found[name] = next(iter(hits))
    taken = list(found.values())
    return {t: s for t, s in found.items() if taken.count(s) == 1}


def parse_models_option(name: str, value: Any, config: Config) -> tuple[dict[str, str], list[str]]:
    """A router section's ``models``: ``{trained: served}`` or ``[served, ...]``.

    Returns the explicit mapping and the served models the router routes among (all of the
    config's when the option gives no list). Served names must be configured models.
    """
    served_all = [m.name for m in config.models]
    if value is None:
        return {}, served_all
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        pool = []
        for i, served in enumerate(value):
            model = config.model(served)
            if model is None:
                raise ConfigError(
                    f"routers.{name}.models[{i}]: {served!r} is not a served model; "
                    f"served: {', '.join(served_all) or 'none'}"
                )
            pool.append(model.name)
        return {}, list(dict.fromkeys(pool))
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        pairs = dict(value)
    else:
        raise ConfigError(
            f"routers.{name}.models must map trained names to served models "
            "({trained: served}) or list served models, got "
            f"{type(value).__name__}"
        )
    for trained, served in pairs.items():
        model = config.model(served)
        if model is None:
            raise ConfigError(
                f"routers.{name}.models.{trained}: {served!r} is not a served model; "
                f"served: {', '.join(served_all) or 'none'}"
            )
        pairs[trained] = model.name  # an alias stands for its model
    return pairs, served_all


def bind(router: Router, models_option: Any, config: Config) -> Coverage:
    """Bind ``router`` to the served models; raises ConfigError when it can score none."""
    from polyroute.routing.online.linucb import LinUCBRouter
    from polyroute.routing.routers.learned import LearnedRouter

    explicit, pool = parse_models_option(router.name, models_option, config)
    coverage = Coverage(router.name, router.kind)
    learned = router if isinstance(router, LearnedRouter) else None
    if isinstance(router, LinUCBRouter):
        learned = router.prior_router
    if learned is None:
        coverage.scored = pool
        return coverage
    trained = list(learned.models)
    pool_models = [m for m in config.models if m.name in pool]
    rest = [t for t in trained if t not in explicit]
    free = [m for m in pool_models if m.name not in explicit.values()]
    mapping = {**match_names(rest, free), **explicit}
    mapping = {t: s for t, s in mapping.items() if t != s}
    learned.serve_as(mapping)
    coverage.renamed = mapping
    known = set(learned.models)
    coverage.scored = [m for m in pool if m in known]
    add_prior = getattr(learned, "add_prior", None)
    for model in pool_models:
        if model.name in known:
            continue
        if callable(add_prior):
            add_prior(model.name, input_price=model.input_price, output_price=model.output_price)
            coverage.priors.append(model.name)
        else:
            coverage.unscored.append(model.name)
    if not coverage.scored and learned is router:
        raise ConfigError(
            f"routers.{router.name}: the router was trained on {', '.join(trained)} and none "
            f"of them is served here (served: {', '.join(pool) or 'none'}). Fix: map them, "
            f"e.g. routers.{router.name}.models: {{{trained[0]}: {pool[0] if pool else 'NAME'}}}, "
            "or train it on your models (`polyroute bench` then `polyroute train`)"
        )
    if isinstance(router, LinUCBRouter):
        # The bandit itself learns every member; the prior only says where it starts.
        coverage.scored, coverage.priors, coverage.unscored = pool, [], []
    return coverage


def price_prior(models: Sequence[ModelConfig]) -> dict[str, float]:
    """A prior mean quality per model from its price: dearer models are, a priori, better.

    Ranks by output price (input price breaks ties) onto [0.35, 0.65]; a model without a
    price sits in the middle. Weak on purpose: a few feedback scores outweigh it.
    """
    priced = [m for m in models if m.output_price is not None and m.input_price is not None]
    order = sorted(priced, key=lambda m: (m.output_price or 0.0, m.input_price or 0.0))
    prior = {m.name: 0.5 for m in models}
    if len(order) > 1:
        for rank, m in enumerate(order):
            prior[m.name] = 0.35 + 0.3 * rank / (len(order) - 1)
    return prior


def describe(coverages: Mapping[str, Coverage]) -> list[str]:
    """One line per router for the start-up log."""
    lines = []
    for c in coverages.values():
        text = f"{c.router} ({c.kind}): {', '.join(c.scored) or 'no model'}"
        if c.priors:
            text += f"; from a prior: {', '.join(c.priors)}"
        if c.unscored:
            text += f"; cannot score: {', '.join(c.unscored)}"
        if c.renamed:
            text += "; serves " + ", ".join(f"{t} as {s}" for t, s in c.renamed.items())
        lines.append(text)
    return lines
