"""What the learned quality routers share: embeddings in, predicted quality out, the knob on top.

A learned router predicts, for a prompt, each model's expected quality (in [0, 1]) from the
prompt's embedding (:mod:`polyroute.embeddings.minilm`). :meth:`LearnedRouter.route` then
estimates each candidate's cost for this request (its price × the prompt's tokens plus the
expected answer) and picks the candidate maximising predicted quality − λ·cost
(:func:`polyroute.routing.tradeoff.select`). λ comes from the :class:`~polyroute.routing.knob.Knob`,
calibrated at training time and stored in the router's manifest (:mod:`polyroute.routing.persist`).

A family implements four methods: ``_fit`` (learn from embeddings and scores),
``predict_embeddings``, and ``state`` / ``load_state`` (its numpy arrays, for saving). A family
that reads the prompt's text besides its embedding (``mf``'s wide n-gram term) says so in
:attr:`LearnedRouter.reads_text`; every caller then passes the texts beside the embeddings
(``texts=``), row for row, and a missing one is a ValueError, never a silent guess.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from polyroute.embeddings.base import Embedder, Float32Array
from polyroute.embeddings.registry import default_embedder
from polyroute.errors import ConfigError, NoEligibleModel, PolyrouteError, UnknownPrice
from polyroute.routing.base import Candidate, Decision, Router, RouteRequest
from polyroute.routing.knob import Calibration, Knob, calibrate
from polyroute.routing.options import LearnedOptions
from polyroute.routing.pricing import DEFAULT_OUTPUT_TOKENS, PriceTable, prompt_cost
from polyroute.routing.routers.training import task_columns
from polyroute.routing.tradeoff import FloatArray, select


@dataclass(frozen=True, slots=True)
class CalibrationSet:
    """Predictions on prompts the router did not learn from, with their costs and true scores.

    Kept with the router so that its knob can be re-targeted without retraining.
    """

    predicted: FloatArray
    costs: FloatArray
    scores: FloatArray


class LearnedRouter(Router):
    """Base of the routers that predict per-model quality from prompt embeddings."""

    blocking: ClassVar[bool] = True
    Options = LearnedOptions

    def __init__(self, name: str, *, embedder: Embedder | None = None) -> None:
        super().__init__(name)
        #: The models it predicts for, in the column order of :meth:`predict`.
        self.models: list[str] = []
        #: USD per 1M (input, output) tokens, used for candidates that bring no price.
        self.prices: dict[str, tuple[float, float]] = {}
        self.output_tokens = DEFAULT_OUTPUT_TOKENS
        self.knob = Knob()
        self.lam = 0.0
        self.calibration: Calibration | None = None
        self.calibration_set: CalibrationSet | None = None
        #: Models whose quality column is a prior, not learned from their own scores, with
        #: how it was made (e.g. "mean of 8 known models"); the decision's reason says so.
        self.priors: dict[str, str] = {}
        #: The manifest it was loaded from (empty for a router trained in this process).
        self.manifest: dict[str, Any] = {}
        self._embedder = embedder

    # -- what each family implements ------------------------------------------------------

    @abstractmethod
    def _fit(
        self,
        embeddings: Float32Array,
        scores: FloatArray,
        texts: Sequence[str] | None,
        tasks: FloatArray | None = None,
    ) -> None:
        """Learn from (n, dim) embeddings and (n, m) scores in [0, 1] (NaN = unknown), and
        the n prompt ``texts`` (given whenever :attr:`reads_text`). ``tasks`` (n, k), when
        the data labels them, are the prompts' tasks as one-hot columns
        (:func:`~polyroute.routing.routers.training.task_columns`): extra targets a family
        may learn from to shape what it reads of a prompt, never predicted."""

    @abstractmethod
    def predict_embeddings(
        self, embeddings: Float32Array, texts: Sequence[str] | None = None
    ) -> FloatArray:
        """(n, m) predicted quality in [0, 1] for precomputed (n, dim) embeddings (and the
        prompts' ``texts``, which a router that :attr:`reads_text` needs)."""

    @property
    def reads_text(self) -> bool:
        """Whether the router needs the prompts' texts beside their embeddings."""
        return False

    def checked_texts(self, texts: Sequence[str] | None, rows: int) -> Sequence[str] | None:
        """``texts`` when this router reads them (ValueError when missing or not ``rows``
        long), else None."""
        if not self.reads_text:
            return None
        if texts is None:
            raise ValueError(
                f"{self.kind} router {self.name!r} reads the prompts' text besides their "
                "embeddings: pass texts="
            )
        if len(texts) != rows:
            raise ValueError(f"{len(texts)} texts for {rows} embeddings")
        return texts

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Hyperparameters, as keyword arguments of the constructor (saved in the manifest)."""

    @abstractmethod
    def state(self) -> dict[str, NDArray[Any]]:
        """The learned arrays, by name (saved in ``arrays.npz``)."""

    @abstractmethod
    def load_state(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        """Restore what :meth:`state` returned."""

    # -- learning and predicting ----------------------------------------------------------

    def fit(
        self,
        embeddings: Float32Array,
        scores: FloatArray,
        models: Sequence[str],
        texts: Sequence[str] | None = None,
        tasks: Sequence[str | None] | None = None,
    ) -> None:
        """Learn to predict ``scores`` (n, m; NaN = unknown) from ``embeddings`` (n, dim)
        and, for a router that :attr:`reads_text`, the prompts' ``texts``; ``tasks``, each
        prompt's task label (None: unlabelled), for a family that learns from them."""
        scores = np.asarray(scores, dtype=np.float64)
        if embeddings.ndim != 2 or scores.shape != (embeddings.shape[0], len(models)):
            raise ValueError(
                f"embeddings {embeddings.shape} and scores {scores.shape} do not match "
                f"({len(models)} models)"
            )
        if len(set(models)) != len(models):
            raise ValueError("model names must be unique")
        known = np.isfinite(scores)
        if (scores[known] < 0).any() or (scores[known] > 1).any():
            raise ValueError("scores must lie in [0, 1]")
        has_score: NDArray[np.bool_] = np.asarray(known.any(axis=0))
        empty = [m for j, m in enumerate(models) if not has_score[j]]
        if empty:
            raise ValueError(f"no known score for {', '.join(empty)}: cannot learn it")
        read = self.checked_texts(texts, embeddings.shape[0])
        columns = task_columns(tasks, embeddings.shape[0])
        self.models = list(models)
        self._fit(np.asarray(embeddings, dtype=np.float32), scores, read, columns)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    def warm(self) -> None:
        # Loading and checking the embedding weights takes about a second: do it at start-up.
        self.predict(["warm-up"])

    def predict(self, prompts: Sequence[str]) -> FloatArray:
        """(len(prompts), len(models)) predicted quality in [0, 1]."""
        return self.predict_embeddings(self.embedder.embed(prompts), texts=prompts)

    # -- serving other names ---------------------------------------------------------------

    def serve_as(self, names: Mapping[str, str]) -> None:
        """Relabel the models it was trained on as the served models they are
        (``{trained name: served name}``); the learned columns stay as they are.

        A router trained on ``gpt-4o`` then scores a served ``gpt4o-prod`` as it learned
        ``gpt-4o``. Unmapped models keep their names; a mapping that names a model the router
        does not know, or serves two trained models under one name, is a ConfigError.
        """
        unknown = sorted(set(names) - set(self.models))
        if unknown:
            raise ConfigError(
                f"router {self.name!r} was not trained on {', '.join(unknown)}; "
                f"it knows {', '.join(self.models)}"
            )
        renamed = [names.get(m, m) for m in self.models]
        if len(set(renamed)) != len(renamed):
            clash = sorted({n for n in renamed if renamed.count(n) > 1})
            raise ConfigError(
                f"router {self.name!r}: {', '.join(clash)} would stand for two trained models"
            )
        self.prices = {names.get(m, m): p for m, p in self.prices.items()}
        self.models = renamed

    # -- the knob -------------------------------------------------------------------------

    def set_knob(self, knob: Knob, calibration_set: CalibrationSet | None = None) -> Calibration:
        """Use ``knob`` from now on, calibrating it on ``calibration_set`` (or the stored one)."""
        data = calibration_set or self.calibration_set
        if data is None:
            if knob.needs_calibration:
                raise ValueError(
                    f"{knob.describe()} needs calibration data; this router has none stored"
                )
            zeros = np.zeros((1, len(self.models)))
            data = CalibrationSet(zeros, zeros, zeros)
        # Models added after training (appended) have no calibration column: λ is calibrated
        # on the models the data covers, which is what its unit (quality per USD) allows.
        width = data.predicted.shape[1]
        calibration = calibrate(knob, data.predicted, data.costs, data.scores, self.models[:width])
        self.knob, self.lam, self.calibration = knob, calibration.lam, calibration
        if calibration_set is not None:
            self.calibration_set = calibration_set
        return calibration

    # -- serving --------------------------------------------------------------------------

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any]) -> Router:
        """Config: ``{kind: knn, path: DIR}`` plus at most one of ``lambda``,
        ``max_cost_fraction`` or ``min_quality_fraction`` to override the stored knob."""
        from polyroute.options import parse_options
        from polyroute.routing.persist import load_router

        parsed = parse_options(LearnedOptions, options, f"routers.{name}")
        path = parsed.path
        try:
            knob = Knob(
                lam=parsed.lam,
                max_cost_fraction=parsed.max_cost_fraction,
                min_quality_fraction=parsed.min_quality_fraction,
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"routers.{name}: {e}") from None
        router = load_router(path, name=name)
        if router.kind != cls.kind:
            raise ConfigError(
                f"routers.{name}: {path} holds a {router.kind!r} router, not {cls.kind!r}"
            )
        if knob.to_dict():
            try:
                router.set_knob(knob)
            except ValueError as e:
                raise ConfigError(f"routers.{name}: {e}") from None
        return router

    def route(self, request: RouteRequest, candidates: Sequence[Candidate]) -> Decision:
        index = {m: j for j, m in enumerate(self.models)}
        known = [c for c in candidates if c.name in index]
        if not known:
            raise NoEligibleModel(
                f"router {self.name!r} predicts for {', '.join(self.models)}; "
                f"none of the eligible models ({', '.join(c.name for c in candidates)}) is one"
            )
        predicted = self.predict([request.prompt])[0]
        tokens = request.input_tokens or int(self.embedder.count_tokens([request.prompt])[0])
        costs = {
            c.name: prompt_cost(tokens, price, request.output_tokens)
            for c in known
            if (price := self._price(c)) is not None
        }
        usable = known if self.lam == 0 else [c for c in known if c.name in costs]
        if not usable:
            raise UnknownPrice(
                f"router {self.name!r} weighs cost (λ = {self.lam:g}) but no eligible model "
                f"has a price: {', '.join(c.name for c in known)}"
            )
        names = [c.name for c in usable]
        quality = np.array([predicted[index[n]] for n in names])
        # With λ = 0 an unpriced model competes on quality alone, and loses ties.
        top = max(costs.values(), default=0.0) + 1.0
        cost = np.array([costs.get(n, top) for n in names])
        utility = quality - self.lam * cost
        order = sorted(range(len(names)), key=lambda i: (-utility[i], cost[i]))
        chosen = int(select(quality[None, :], cost[None, :], self.lam)[0])
        order.remove(chosen)
        skipped = [c.name for c in known if c not in usable]
        return Decision(
            model=names[chosen],
            router=self.name,
            scores={n: float(predicted[index[n]]) for n in (c.name for c in known)},
            costs=costs,
            reason=self._reason(names, quality, cost, chosen, costs, skipped),
            fallbacks=tuple(names[i] for i in order),
        )

    def _price(self, candidate: Candidate) -> tuple[float, float] | None:
        if candidate.input_price is not None and candidate.output_price is not None:
            return (candidate.input_price, candidate.output_price)
        return self.prices.get(candidate.name)

    def _reason(
        self,
        names: list[str],
        quality: FloatArray,
        cost: FloatArray,
        chosen: int,
        costs: Mapping[str, float],
        skipped: list[str],
    ) -> str:
        name = names[chosen]
        price = f" at ${costs[name]:.2g}" if name in costs else ""
        text = f"{name}: predicted quality {quality[chosen]:.2f}{price}"
        if name in self.priors:
            text += f" (a prior: {self.priors[name]}; no data on {name} yet)"
        best = int(np.argmax(quality))
        if best != chosen:
            text += (
                f"; {names[best]} is predicted best ({quality[best]:.2f}) but costs "
                f"{cost[best] / max(cost[chosen], 1e-12):.1f}× as much"
            )
        elif len(names) > 1:
            text += "; the best predicted quality"
        target = self.knob.describe() if self.knob.needs_calibration else "set directly"
        text += f" (λ = {self.lam:.3g}, {target})"
        if skipped:
            text += f"; skipped for want of a price: {', '.join(skipped)}"
        return text


def price_table(prices: PriceTable, models: Sequence[str]) -> dict[str, tuple[float, float]]:
    """The prices of ``models`` (those that have one) as plain tuples."""
    return {m: (float(prices[m][0]), float(prices[m][1])) for m in models if m in prices}


def check_finite(predicted: FloatArray, what: str) -> FloatArray:
    """Predictions clipped to [0, 1]; a NaN (a broken model file) is an error, not a guess."""
    if not np.isfinite(predicted).all():
        raise PolyrouteError(f"{what} predicted NaN or infinite quality")
    return np.clip(predicted, 0.0, 1.0)
