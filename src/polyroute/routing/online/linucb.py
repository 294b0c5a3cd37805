"""LinUCB over the prompt's embedding: a ridge regression per model, optimistic by α·σ.

Disjoint LinUCB (Li, Chu, Langford & Schapire 2010). Each model ``a`` keeps
``A_a = ridge·I + Σ x xᵀ`` and ``b_a = Σ (r − prior_a) x`` over the requests it served, and
its index for a prompt with features ``x`` is::

    UCB(a, x) = prior_a(x) + θ_aᵀ x + α · sqrt(xᵀ A_a⁻¹ x)        θ_a = A_a⁻¹ b_a

The router picks the model maximising ``UCB(a, x) − λ·cost(a)``.

**Features.** ``x`` is the prompt's 384-d MiniLM embedding, projected to ``dim`` dimensions
by a fixed Gaussian random projection (seeded, entries N(0, 1/dim): lengths and angles are
kept up to ~1/sqrt(dim) by Johnson–Lindenstrauss), plus a constant 1 so each model also
learns its mean. A random projection needs no data to fit and is rebuilt from its seed, so
the stored state is only A and b; at dim = 32 a route costs well under a millisecond and the
state of 9 models is ~10k numbers. ``dim=None`` keeps the full embedding. Each arm also
keeps A⁻¹ and θ (derived, recomputed from A at each update), so routing solves nothing.

**Prior.** ``prior`` maps an embedding to a predicted quality per model (an offline learned
router's predictions); the bandit then learns only the *residual* of each model on top of
it. With no feedback yet (θ = 0) it ranks like the offline router, and feedback corrects it
where the offline router is wrong (drifted models, prompt types it saw little of). Models
the prior does not know, and every model without a prior, start from ``baseline`` (0.5:
mid-range, so that ridge shrinkage pulls estimates toward "average", not toward 0).

**Defaults** (α = 0.5, ridge = 10), measured by ``benchmarks/online_learning.py`` on
LLMRouter's data. In the Bayesian reading θ ~ N(0, σ²/ridge) a priori, with σ the feedback's
noise (≈ 0.5 for 0/1 scores), so α = 0.5 is a one-σ bound and the ridge says how far the
starting point (prior or baseline) is trusted: ridge = 10 puts it within ~0.2 of the truth.
The textbook ridge = 1 starts every arm ~0.7 wide, and with models a few points apart it
spent thousands of requests on clearly worse ones; with a prior, it let a few noisy answers
pull the router below the offline router it started from (a larger ridge, ~30, did better
still there: the prior is worth more than a baseline).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from polyroute.embeddings.base import Embedder
from polyroute.embeddings.minilm import DIM
from polyroute.embeddings.registry import embedding_choice, get_embedder
from polyroute.errors import ConfigError
from polyroute.routing.base import RouteRequest
from polyroute.routing.online.base import ArmScores, OnlineRouter, arms_of
from polyroute.routing.options import LinUCBOptions
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.learned import LearnedRouter
from polyroute.routing.tradeoff import FloatArray

#: What contexts are embedded with when neither an embedder nor a prior brings one: the
#: 384-d static vector (a ridge per arm over minilm-lexical's 1,408 dimensions would cost
#: ~13× as much per update, and a random projection to ``dim`` blurs the n-grams anyway).
CONTEXT_EMBEDDING = "minilm-static"
#: An offline router's predicted quality per model for one prompt: from its embedding and
#: its text (None when the caller gave only an embedding as the context).
Prior = Callable[[FloatArray, str | None], Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class PromptContext:
    """What :meth:`LinUCBRouter.context` returns: the prompt's embedding (the bandit's
    features), and its text for a prior that reads it (``mf``'s wide term). A bare
    embedding array is accepted as a context too (text unknown)."""

    embedding: FloatArray
    text: str | None = None


def learned_prior(router: LearnedRouter) -> tuple[Prior, str]:
    """A trained learned router's predictions as a LinUCB prior, and the name that pins it.

    The name holds the router's kind and the hash of its learned arrays: a LinUCB state
    learned on top of one prior is refused on top of another (retrained) one.
    """

    def prior(embedding: FloatArray, text: str | None) -> dict[str, float]:
        # router.models is read per call: the gateway may relabel it to the served names.
        row = np.asarray(embedding, dtype=np.float32)[None, :]
        if router.reads_text and text is None:
            raise ValueError(
                f"the prior {router.kind} router reads the prompt's text: give the context "
                "that LinUCBRouter.context(request) returns, not a bare embedding"
            )
        texts = None if text is None else [text]
        predicted = router.predict_embeddings(row, texts)[0].tolist()
        return dict(zip(router.models, predicted, strict=True))

    arrays = router.manifest.get("arrays", {}).get("sha256") or _fingerprint(router)
    return prior, f"{router.kind}:{arrays[:16]}"


def _fingerprint(router: LearnedRouter) -> str:
    """A hash of an unsaved router's learned arrays."""
    h = hashlib.sha256()
    for key, value in sorted(router.state().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class _Features:
    """One request's features and each candidate's prior (computed outside the lock)."""

    x: FloatArray
    prior: FloatArray


@dataclass(frozen=True, slots=True)
class _Arm:
    """One model's ridge regression: A, b and the feedback count (the state), with A⁻¹ and θ.

    A⁻¹ and θ = A⁻¹b are derived, kept so that routing is two matrix–vector products per
    candidate instead of a linear solve; they are recomputed from A on every update, never
    updated incrementally, so no rounding drift builds up over a long stream.
    """

    a: FloatArray
    b: FloatArray
    n: int
    inverse: FloatArray
    theta: FloatArray

    @staticmethod
    def of(a: FloatArray, b: FloatArray, n: int) -> _Arm:
        inverse: FloatArray = np.asarray(np.linalg.inv(a), dtype=np.float64)
        theta: FloatArray = np.asarray(inverse @ b, dtype=np.float64)
        return _Arm(a, b, n, inverse, theta)


@ROUTERS.register("linucb")
class LinUCBRouter(OnlineRouter):
    """Contextual bandit on the prompt embedding; optionally warm-started from a prior."""

    kind: ClassVar[str] = "linucb"
    Options = LinUCBOptions
    index_name: ClassVar[str] = "upper bound"
    blocking: ClassVar[bool] = True

    def __init__(
        self,
        name: str = "linucb",
        *,
        lam: float = 0.0,
        alpha: float = 0.5,
        dim: int | None = 32,
        ridge: float = 10.0,
        seed: int = 0,
        embedder: Embedder | None = None,
        input_dim: int = DIM,
        prior: Prior | None = None,
        prior_name: str | None = None,
        baseline: float = 0.5,
    ) -> None:
        super().__init__(name, lam=lam)
        for what, v in (("alpha", alpha), ("ridge", ridge), ("baseline", baseline)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{what} must be a finite number >= 0, got {v!r}")
        if ridge == 0:
            raise ValueError("ridge must be > 0 (it keeps A invertible)")
        if dim is not None and dim < 1:
            raise ValueError(f"dim must be >= 1 or None, got {dim!r}")
        if prior is not None and not prior_name:
            raise ValueError("a prior needs a prior_name (recorded in the state)")
        self.alpha, self.ridge, self.seed, self.baseline = alpha, ridge, seed, baseline
        self.prior, self.prior_name = prior, (prior_name if prior is not None else None)
        #: The learned router the prior comes from, when it was loaded from config.
        self.prior_router: LearnedRouter | None = None
        self._embedder = embedder
        # Without an embedder, context() embeds with the static embedding: record its id.
        self.embedder_id = (
            embedder.fingerprint
            if embedder is not None
            else embedding_choice(CONTEXT_EMBEDDING).fingerprint
        )
        self._requested_dim = dim
        self._shape(input_dim)
        self._arms: dict[str, _Arm] = {}

    def _shape(self, input_dim: int) -> None:
        self.input_dim = input_dim
        dim = self._requested_dim
        self.dim = dim if dim is not None and dim < input_dim else None
        if self.dim is None:
            self._projection: FloatArray | None = None
        else:
            rng = np.random.default_rng(self.seed)
            scale = 1.0 / math.sqrt(self.dim)
            self._projection = rng.normal(0.0, scale, size=(self.dim, input_dim))
        self.features = (self.dim or input_dim) + 1

    def use_embedder(self, embedder: Embedder) -> None:
        """Contexts from ``embedder`` from now on (before any feedback): a learned prior
        predicts from the vectors of the embedding it was trained on, so it brings its own."""
        if self._arms:
            raise ValueError("the embedding cannot change once arms have learned")
        self._embedder, self.embedder_id = embedder, embedder.fingerprint
        self._shape(embedder.dim)

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any]) -> LinUCBRouter:
        """As :meth:`OnlineRouter.from_config`; ``prior: DIR`` loads a trained learned router."""
        router = super().from_config(name, {k: v for k, v in options.items() if k != "prior"})
        assert isinstance(router, LinUCBRouter)
        path = options.get("prior")
        if path is not None:
            if not isinstance(path, str):
                raise ConfigError(f"routers.{name}.prior must be a directory path, got {path!r}")
            from polyroute.routing.persist import load_router

            router.prior_router = load_router(path)
            router.use_embedder(router.prior_router.embedder)
            router.prior, router.prior_name = learned_prior(router.prior_router)
        return router

    # -- context ------------------------------------------------------------------------

    def context(self, request: RouteRequest) -> PromptContext:
        """The prompt's embedding and text (what :meth:`update` wants back with the feedback)."""
        if self._embedder is None:
            self._embedder = get_embedder(CONTEXT_EMBEDDING)
        embedding = np.asarray(self._embedder.embed([request.prompt])[0], dtype=np.float64)
        return PromptContext(embedding, request.prompt)

    def _featurize(
        self, names: Sequence[str], context: PromptContext | FloatArray | None
    ) -> _Features:
        if context is None:
            raise ValueError("linucb needs the request's context (its prompt embedding)")
        text = context.text if isinstance(context, PromptContext) else None
        raw = context.embedding if isinstance(context, PromptContext) else context
        e = np.asarray(raw, dtype=np.float64).reshape(-1)
        if e.shape[0] != self.input_dim or not np.isfinite(e).all():
            raise ValueError(f"context must be {self.input_dim} finite numbers, got {e.shape}")
        z = e if self._projection is None else self._projection @ e
        known = self.prior(e, text) if self.prior is not None else {}
        prior = np.array([float(known.get(n, self.baseline)) for n in names])
        return _Features(np.append(z, 1.0), prior)

    # -- the bandit -----------------------------------------------------------------------

    def _scores(self, names: Sequence[str], features: _Features) -> ArmScores:
        x, k = features.x, len(names)
        mean, var = np.empty(k), np.empty(k)
        plays = []
        for i, n in enumerate(names):
            arm = self._arms.get(n)
            if arm is None:  # A = ridge·I, b = 0
                mean[i], var[i] = 0.0, float(x @ x) / self.ridge
                plays.append(0)
            else:
                mean[i], var[i] = arm.theta @ x, x @ arm.inverse @ x
                plays.append(arm.n)
        estimate = features.prior + mean
        width = np.sqrt(np.maximum(var, 0.0))
        return ArmScores(index=estimate + self.alpha * width, estimate=estimate, plays=plays)

    def _update(self, model: str, reward: float, features: _Features) -> None:
        x, d = features.x, self.features
        arm = self._arms.get(model)
        a, b, n = (arm.a, arm.b, arm.n) if arm else (self.ridge * np.eye(d), np.zeros(d), 0)
        self._arms[model] = _Arm.of(a + np.outer(x, x), b + (reward - features.prior[0]) * x, n + 1)

    # -- state ----------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        """What the learned numbers mean: a state is only valid under the same settings."""
        return {
            "input_dim": self.input_dim,
            "dim": self.dim,
            "seed": self.seed if self.dim is not None else None,
            "ridge": self.ridge,
            "baseline": self.baseline,
            "prior": self.prior_name,
            "embedder": self.embedder_id,
        }

    def _state(self) -> dict[str, Any]:
        arms = {
            m: {"A": arm.a.tolist(), "b": arm.b.tolist(), "n": arm.n}
            for m, arm in self._arms.items()
        }
        return {"config": self._config(), "arms": arms}

    def _shift(
        self, base: Mapping[str, Any], plus: Mapping[str, Any], minus: Mapping[str, Any]
    ) -> dict[str, Any]:
        ours = self._config()
        if any(s.get("config") != ours for s in (base, plus, minus)):
            raise ValueError("linucb states learned with other settings cannot be added")
        d = self.features
        sides = [arms_of(s) for s in (base, plus, minus)]

        def stats(arms: Mapping[str, Any], model: str) -> tuple[FloatArray, FloatArray, int]:
            arm = arms.get(model)
            if arm is None:  # nothing learned: A = ridge·I, b = 0
                return self.ridge * np.eye(d), np.zeros(d), 0
            return np.asarray(arm["A"], np.float64), np.asarray(arm["b"], np.float64), arm["n"]

        out = {}
        for model in sorted(set().union(*sides)):
            (a0, b0, n0), (a1, b1, n1), (a2, b2, n2) = (stats(s, model) for s in sides)
            # Each A holds ridge·I once; A0 + A1 − A2 keeps it once.
            out[model] = {"A": (a0 + a1 - a2).tolist(), "b": (b0 + b1 - b2).tolist(),
                          "n": int(n0 + n1 - n2)}  # fmt: skip
        return {"config": ours, "arms": out}

    def _load(self, state: Mapping[str, Any]) -> None:
        saved, ours = state.get("config"), self._config()
        if saved != ours:
            diff = sorted(
                k for k in ours if not isinstance(saved, Mapping) or saved.get(k) != ours[k]
            )
            raise ValueError(
                f"linucb state was learned with other settings ({', '.join(diff)} differ): "
                f"saved {saved!r}, this router {ours!r}"
            )
        raw = state.get("arms")
        if not isinstance(raw, Mapping):
            raise ValueError("state 'arms' must be an object")
        d = self.features
        arms: dict[str, _Arm] = {}
        for model, arm in raw.items():
            try:
                a = np.array(arm["A"], dtype=np.float64)
                b = np.array(arm["b"], dtype=np.float64)
                n = arm["n"]
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"arms[{model!r}] needs A, b and n ({e})") from None
            if a.shape != (d, d) or b.shape != (d,) or not isinstance(n, int) or n < 0:
                raise ValueError(f"arms[{model!r}]: expected A {d}×{d}, b of {d} and n >= 0")
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                raise ValueError(f"arms[{model!r}]: A and b must be finite")
            try:
                arms[model] = _Arm.of(a, b, n)
            except np.linalg.LinAlgError:
                raise ValueError(f"arms[{model!r}]: A is singular") from None
        self._arms = arms
