"""``mlp``: one small neural network predicts every model's quality from the prompt embedding.

A hidden layer shared by all models (what makes a prompt hard is largely common to them)
feeds one sigmoid output per model. It is trained on the known scores only (NaN entries are
masked out of the loss) with binary cross-entropy, which takes fractional scores (F1-like)
as they are, Adam, weight decay, and early stopping on a held-out tenth of the prompts.
A few networks from different seeds are averaged, which steadies the predictions.

Written in numpy (about 60 lines of maths) rather than with scikit-learn: its networks
cannot mask unknown targets, and a saved router is then plain arrays, loaded without
pickle and served without any dependency beyond numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
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


@ROUTERS.register("mlp")
class MLPRouter(LearnedRouter):
    """A shared-hidden-layer network, one sigmoid output per model; an ensemble of seeds."""

    kind = "mlp"

    def __init__(
        self,
        name: str = "mlp",
        *,
        hidden: int = 128,
        ensemble: int = 3,
        weight_decay: float = 1e-4,
        seed: int = 0,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(name, embedder=embedder)
        if hidden < 1 or ensemble < 1:
            raise ValueError("hidden and ensemble must be >= 1")
        self.hidden = hidden
        self.ensemble = ensemble
        self.weight_decay = weight_decay
        self.seed = seed
        self._nets: list[dict[str, FloatArray]] = []

    def params(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "ensemble": self.ensemble,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
        }

    def _fit(
        self,
        embeddings: Float32Array,
        scores: FloatArray,
        texts: Sequence[str] | None,
        tasks: FloatArray | None = None,
    ) -> None:
        options = TrainingOptions(hidden=self.hidden, weight_decay=self.weight_decay)
        x = embeddings.astype(np.float32)
        self._nets = fit_ensemble(
            lambda rng: train_network(x, scores, options, rng),
            seed=self.seed,
            members=self.ensemble,
        )

    def state(self) -> dict[str, NDArray[Any]]:
        return ensemble_state(self._nets)

    def load_state(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        self._nets = ensemble_from_state(arrays)

    def predict_embeddings(
        self, embeddings: Float32Array, texts: Sequence[str] | None = None
    ) -> FloatArray:
        x = checked_input(self._nets, embeddings)
        total = sum(_forward(net, x)[1] for net in self._nets)
        return check_finite(
            np.asarray(total, dtype=np.float64) / len(self._nets), f"mlp router {self.name!r}"
        )


def _forward(net: Mapping[str, NDArray[Any]], x: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    hidden = np.maximum(x @ net["w1"] + net["b1"], 0.0)
    logits = hidden @ net["w2"] + net["b2"]
    return hidden, 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))


def train_network(
    x: Float32Array, y: FloatArray, options: TrainingOptions, rng: np.random.Generator
) -> dict[str, FloatArray]:
    """A network fitted to the known entries of ``y`` (NaN = unknown); the best epoch's weights."""
    d, m, h = x.shape[1], y.shape[1], options.hidden

    def init(prior: FloatArray) -> dict[str, FloatArray]:
        return {
            "w1": (rng.standard_normal((d, h)) * np.sqrt(2.0 / d)).astype(np.float32),
            "b1": np.zeros(h, dtype=np.float32),
            "w2": (rng.standard_normal((h, m)) * np.sqrt(1.0 / h)).astype(np.float32),
            "b2": np.log(prior / (1 - prior)).astype(np.float32),  # each model's average
        }

    return fit_masked(x, y, options, rng, init, _gradients, _loss)


def _loss(
    net: Mapping[str, FloatArray], x: NDArray[Any], y: NDArray[Any], mask: NDArray[Any]
) -> float:
    _, p = _forward(net, x)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * mask
    return float(bce.sum() / max(mask.sum(), 1.0))


def _gradients(
    net: Mapping[str, FloatArray],
    x: NDArray[Any],
    y: NDArray[Any],
    mask: NDArray[Any],
    decay: float,
) -> dict[str, FloatArray]:
    hidden, p = _forward(net, x)
    # d(mean masked BCE)/d(logits) = (p - y) · mask / (number of known entries)
    d_logits = ((p - y) * mask / max(float(mask.sum()), 1.0)).astype(np.float32)
    d_hidden = (d_logits @ net["w2"].T) * (hidden > 0)
    return {
        "w1": x.T @ d_hidden + decay * net["w1"],
        "b1": d_hidden.sum(axis=0),
        "w2": hidden.T @ d_logits + decay * net["w2"],
        "b2": d_logits.sum(axis=0),
    }
