"""``mf``: quality = σ(prompt tower(x) · model vector + model bias); every model is a vector.

Matrix factorisation of the (prompt × model) quality table, as in IRT and EmbedLLM: a tower
shared by every model turns the prompt embedding into a ``dim``-d vector (one ReLU layer,
then a linear projection), and each model is a learned ``dim``-d vector plus a bias. The
predicted quality of model j on prompt x is ``σ(tower(x) · v_j + c_j)``.

Why this shape: the prompt side no longer belongs to any model, so a model the router never
saw is scored once it has a vector, and finding that vector is a logistic regression on the
frozen tower with ``dim + 1`` unknowns (:meth:`MFRouter.add_model`) — seconds, not a
retraining. With ``dim`` at least the number of models it is exactly as expressive as
``mlp`` (whose output layer is a rank-m matrix anyway), and it is trained the same way:
masked binary cross-entropy (fractional scores as they are), Adam, weight decay, early
stopping on a held-out tenth, an ensemble of seeds.

A new model's vector is the maximum a posteriori estimate under a Gaussian prior fitted to
the known models' (vector, bias) pairs: their mean, and their covariance (plus a little
isotropic variance). With no data the vector *is* the mean; with a few anchor prompts it
moves mostly along the directions in which the known models differ, so three prompts cannot
throw it far; with many it follows the data. :meth:`MFRouter.add_prior` gives a model with no
data a prior vector (a price-weighted mix of the known models) and records it in
:attr:`~polyroute.routing.routers.learned.LearnedRouter.priors`.

``prior_strength`` scales the prior's precision. 3 was chosen on the leave-one-model-out
cross-validation of ``benchmarks/onboarding.py`` (share of the full router's gain kept with
50 anchors: 71% at 0.3, 80% at 1 and 2, 86% at 3, 85% at 5, 81% at 10 and 30): with 25-100
anchors, trusting the known models' spread more than the anchors pays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import threadpoolctl  # type: ignore[import-untyped]
from numpy.typing import NDArray

from polyroute.embeddings.base import Embedder, Float32Array
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.learned import LearnedRouter, check_finite
from polyroute.routing.routers.training import (
    TrainingOptions,
    checked_input,
    ensemble_from_state,
    ensemble_state,
    fit_ensemble,
    fit_masked,
)
from polyroute.routing.tradeoff import FloatArray

#: Isotropic variance added to the prior's covariance, as a fraction of its mean variance:
#: lets a new model differ from the known ones in directions none of them spans, a little.
ISOTROPIC_SHARE = 0.05
#: Newton steps for a new model's vector (it converges in well under ten).
NEWTON_STEPS = 25


@ROUTERS.register("mf")
class MFRouter(LearnedRouter):
    """A shared prompt tower and one learned (vector, bias) per model; an ensemble of seeds."""

    kind = "mf"

    def __init__(
        self,
        name: str = "mf",
        *,
        hidden: int = 128,
        dim: int = 16,
        ensemble: int = 3,
        weight_decay: float = 1e-4,
        prior_strength: float = 3.0,
        seed: int = 0,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(name, embedder=embedder)
        if hidden < 1 or dim < 1 or ensemble < 1:
            raise ValueError("hidden, dim and ensemble must be >= 1")
        if not (math.isfinite(prior_strength) and prior_strength > 0):
            raise ValueError(f"prior_strength must be > 0, got {prior_strength}")
        self.hidden = hidden
        self.dim = dim
        self.ensemble = ensemble
        self.weight_decay = weight_decay
        self.prior_strength = prior_strength
        self.seed = seed
        self._nets: list[dict[str, FloatArray]] = []

    def params(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "dim": self.dim,
            "ensemble": self.ensemble,
            "weight_decay": self.weight_decay,
            "prior_strength": self.prior_strength,
            "seed": self.seed,
        }

    # -- learning -------------------------------------------------------------------------

    def _fit(self, embeddings: Float32Array, scores: FloatArray) -> None:
        options = TrainingOptions(hidden=self.hidden, weight_decay=self.weight_decay)
        x = embeddings.astype(np.float32)
        self._nets = fit_ensemble(
            lambda rng: train_factorised(x, scores, options, self.dim, rng),
            seed=self.seed,
            members=self.ensemble,
        )
        self.priors = {}

    def state(self) -> dict[str, NDArray[Any]]:
        return ensemble_state(self._nets)

    def load_state(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        self._nets = ensemble_from_state(arrays)

    def predict_embeddings(self, embeddings: Float32Array) -> FloatArray:
        x = checked_input(self._nets, embeddings)
        total = sum(_probabilities(net, _tower(net, x)) for net in self._nets)
        return check_finite(
            np.asarray(total, dtype=np.float64) / len(self._nets), f"mf router {self.name!r}"
        )

    # -- new models -----------------------------------------------------------------------

    def model_vectors(self) -> list[FloatArray]:
        """Per ensemble member, the (models, dim + 1) matrix of [vector, bias] rows."""
        return [np.hstack([net["v"].T, net["c"][:, None]]).astype(np.float64) for net in self._nets]

    def add_model(
        self,
        name: str,
        embeddings: Float32Array,
        scores: FloatArray,
        price: tuple[float, float] | None = None,
    ) -> int:
        """Fit ``name``'s vector and bias from its ``scores`` (n,; NaN = unknown) on prompts
        with ``embeddings`` (n, dim), the rest of the router frozen; returns the prompts used.

        A model already known is refitted (a prior becomes a fitted vector). The fit is the
        posterior mode under the known models' prior (module doc), so few prompts move it
        little. The knob's λ is kept: it is in quality points per USD, the same for any model.
        """
        x = np.asarray(embeddings, dtype=np.float32)
        y = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not self._nets:
            raise ValueError("the router is not trained")
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"embeddings {x.shape} and scores {y.shape} do not match")
        known = np.isfinite(y)
        if not known.any():
            raise ValueError(f"no score for {name}: cannot fit its vector")
        if (y[known] < 0).any() or (y[known] > 1).any():
            raise ValueError("scores must lie in [0, 1]")
        x, y = x[known], y[known]
        reference = self._reference_columns(exclude=name)
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            rows = [
                fit_vector(_tower(net, x).astype(np.float64), y, *self._prior(u, reference))
                for net, u in zip(self._nets, self.model_vectors(), strict=True)
            ]
        self._set_column(name, rows)
        self.priors.pop(name, None)
        if price is not None:
            self.prices[name] = (float(price[0]), float(price[1]))
        return int(known.sum())

    def add_prior(
        self, name: str, input_price: float | None = None, output_price: float | None = None
    ) -> str:
        """Give ``name`` (no data yet) a prior vector; returns how it was made (also kept in
        :attr:`priors`, which the routing decision's reason quotes).

        With a price, and known models with prices, the prior is a mix of the known models'
        vectors weighted by closeness in log price (a model costing what 70b models cost is
        more likely to answer like them); otherwise the known models' mean.
        """
        if not self._nets:
            raise ValueError("the router is not trained")
        reference = self._reference_columns(exclude=name)
        weights, how = self._price_weights(reference, input_price, output_price)
        rows = [weights @ u[reference] for u in self.model_vectors()]
        self._set_column(name, rows)
        self.priors[name] = how
        if input_price is not None and output_price is not None:
            self.prices[name] = (float(input_price), float(output_price))
        return how

    def _reference_columns(self, exclude: str) -> list[int]:
        """The models a prior is made from: those fitted on data (not priors), less ``exclude``."""
        cols = [j for j, m in enumerate(self.models) if m != exclude and m not in self.priors]
        if not cols:
            raise ValueError("no model fitted on data to base a new model on")
        return cols

    def _prior(self, u: FloatArray, cols: list[int]) -> tuple[FloatArray, FloatArray]:
        """(mean, precision) of the Gaussian prior over a new [vector, bias]."""
        known = u[cols]
        mean = known.mean(axis=0)
        width = known.shape[1]
        one = len(cols) == 1  # no spread to learn from: a unit prior
        cov = np.eye(width) if one else np.cov(known, rowvar=False).reshape(width, width)
        scale = max(float(np.trace(cov)) / width, 1e-6)
        cov = cov + ISOTROPIC_SHARE * scale * np.eye(width)
        return mean, self.prior_strength * np.linalg.inv(cov)

    def _price_weights(
        self, cols: list[int], input_price: float | None, output_price: float | None
    ) -> tuple[FloatArray, str]:
        names = [self.models[j] for j in cols]
        priced = [
            i
            for i, m in enumerate(names)
            if m in self.prices and _blend(*self.prices[m]) > 0 and input_price is not None
        ]
        if input_price is None or output_price is None or not priced:
            return np.full(len(cols), 1.0 / len(cols)), f"mean of {len(cols)} known models"
        target = _blend(input_price, output_price)
        if target <= 0:
            return np.full(len(cols), 1.0 / len(cols)), f"mean of {len(cols)} known models"
        distance = np.array([math.log(target / _blend(*self.prices[names[i]])) for i in priced])
        w = np.exp(-0.5 * distance**2)  # one factor e in price: weight e^-0.5
        w /= w.sum()
        weights = np.zeros(len(cols))
        weights[priced] = w
        top = sorted(zip(w, (names[i] for i in priced), strict=True), reverse=True)[:3]
        mix = ", ".join(f"{n} {share:.0%}" for share, n in top if share >= 0.005)
        return weights, f"price-weighted mix of known models ({mix})"

    def _set_column(self, name: str, rows: list[FloatArray]) -> None:
        """Write ``name``'s [vector, bias] in every member, appending a column if it is new."""
        if name in self.models:
            j = self.models.index(name)
            for net, row in zip(self._nets, rows, strict=True):
                net["v"][:, j] = row[:-1]
                net["c"][j] = row[-1]
            return
        for net, row in zip(self._nets, rows, strict=True):
            net["v"] = np.hstack([net["v"], row[:-1, None].astype(np.float32)])
            net["c"] = np.append(net["c"], np.float32(row[-1]))
        self.models.append(name)


def _blend(input_price: float, output_price: float) -> float:
    """One price per model, to compare models by: the mean of input and output prices."""
    return (float(input_price) + float(output_price)) / 2


def _tower(net: Mapping[str, NDArray[Any]], x: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(np.maximum(x @ net["w1"] + net["b1"], 0.0) @ net["w2"])


def _probabilities(net: Mapping[str, NDArray[Any]], z: NDArray[Any]) -> NDArray[Any]:
    logits = z @ net["v"] + net["c"]
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0))))


def fit_vector(z: FloatArray, y: FloatArray, mean: FloatArray, precision: FloatArray) -> FloatArray:
    """MAP [vector, bias] of a logistic model ``σ(z · v + c)`` for targets ``y`` in [0, 1]
    under the prior N(mean, precision⁻¹), by damped Newton steps."""
    a = np.hstack([z, np.ones((z.shape[0], 1))])
    u = mean.copy()

    def objective(w: FloatArray) -> float:
        t = a @ w
        # BCE with logits, written to stay finite: log(1 + e^t) − y·t
        loss = float(np.sum(np.logaddexp(0.0, t) - y * t))
        d = w - mean
        return loss + 0.5 * float(d @ precision @ d)

    current = objective(u)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ u, -30.0, 30.0)))
        grad = a.T @ (p - y) + precision @ (u - mean)
        hess = (a * (p * (1 - p))[:, None]).T @ a + precision
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:  # only with a degenerate prior; keep the last good u
            break
        t = 1.0
        while t > 1e-4:
            candidate = u - t * step
            value = objective(candidate)
            if value <= current:
                break
            t /= 2
        else:
            break
        converged = current - value < 1e-9
        u, current = candidate, value
        if converged:
            break
    return u


def train_factorised(
    x: Float32Array,
    y: FloatArray,
    options: TrainingOptions,
    dim: int,
    rng: np.random.Generator,
) -> dict[str, FloatArray]:
    """A tower and model vectors fitted to the known entries of ``y`` (NaN = unknown); the
    best epoch's weights on a held-out tenth of the prompts."""
    d, m, h = x.shape[1], y.shape[1], options.hidden

    def init(prior: FloatArray) -> dict[str, FloatArray]:
        return {
            "w1": (rng.standard_normal((d, h)) * np.sqrt(2.0 / d)).astype(np.float32),
            "b1": np.zeros(h, dtype=np.float32),
            "w2": (rng.standard_normal((h, dim)) * np.sqrt(1.0 / h)).astype(np.float32),
            "v": (rng.standard_normal((dim, m)) * np.sqrt(1.0 / dim)).astype(np.float32),
            "c": np.log(prior / (1 - prior)).astype(np.float32),  # each model's average
        }

    return fit_masked(x, y, options, rng, init, _gradients, _loss)


def _loss(
    net: Mapping[str, FloatArray], x: NDArray[Any], y: NDArray[Any], mask: NDArray[Any]
) -> float:
    p = np.clip(_probabilities(net, _tower(net, x)), 1e-7, 1 - 1e-7)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * mask
    return float(bce.sum() / max(mask.sum(), 1.0))


def _gradients(
    net: Mapping[str, FloatArray],
    x: NDArray[Any],
    y: NDArray[Any],
    mask: NDArray[Any],
    decay: float,
) -> dict[str, FloatArray]:
    hidden = np.maximum(x @ net["w1"] + net["b1"], 0.0)
    z = hidden @ net["w2"]
    p = _probabilities(net, z)
    d_logits = ((p - y) * mask / max(float(mask.sum()), 1.0)).astype(np.float32)
    d_z = d_logits @ net["v"].T
    d_hidden = (d_z @ net["w2"].T) * (hidden > 0)
    return {
        "w1": x.T @ d_hidden + decay * net["w1"],
        "b1": d_hidden.sum(axis=0),
        "w2": hidden.T @ d_z + decay * net["w2"],
        "v": z.T @ d_logits + decay * net["v"],
        "c": d_logits.sum(axis=0),
    }
