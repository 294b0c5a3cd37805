"""The network an ``mf`` router trains: a prompt tower and one [vector, bias] per column.

``tower(x) = relu(x · W1 + b1) · W2`` (plus ``s(text) · W_s``, the wide n-gram term, when
the inputs carry n-gram rows); a column's probability is ``σ(tower(x) · v + c)``. Trained by
:func:`~polyroute.routing.routers.training.fit_masked` (masked binary cross-entropy, Adam,
early stopping) from the gradients written out here in numpy. The columns are the models,
and, while training with task heads, the tasks too. Why this shape: the module doc of
:mod:`polyroute.routing.routers.mf`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyroute.embeddings.base import Float32Array
from polyroute.routing.routers.training import TrainingOptions, fit_masked
from polyroute.routing.tradeoff import FloatArray


@dataclass(frozen=True, slots=True)
class Inputs:
    """A batch of prompts as the tower reads them: dense embeddings and, with a wide term,
    their n-gram rows (a CSR matrix); indexable by rows like an array (what
    :func:`~polyroute.routing.routers.training.fit_masked` needs of its input)."""

    dense: Float32Array
    ngrams: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dense.shape)

    def __getitem__(self, rows: Any) -> Inputs:
        return Inputs(self.dense[rows], None if self.ngrams is None else self.ngrams[rows])


def deep(net: Mapping[str, NDArray[Any]], x: Inputs) -> tuple[NDArray[Any], NDArray[Any]]:
    """(hidden layer, tower output) on ``x``: the deep part, plus the wide term if any."""
    hidden = np.maximum(x.dense @ net["w1"] + net["b1"], 0.0)
    z = hidden @ net["w2"]
    if "ws" in net:
        z = z + np.asarray(x.ngrams @ net["ws"], dtype=np.float32)
    return hidden, z


def tower(net: Mapping[str, NDArray[Any]], x: Inputs) -> NDArray[Any]:
    return np.asarray(deep(net, x)[1])


def probabilities(net: Mapping[str, NDArray[Any]], z: NDArray[Any]) -> NDArray[Any]:
    logits = z @ net["v"] + net["c"]
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0))))


def train_factorised(
    x: Inputs,
    y: FloatArray,
    options: TrainingOptions,
    dim: int,
    rng: np.random.Generator,
    wide_decay: float = 0.0,
) -> dict[str, FloatArray]:
    """A tower and model vectors fitted to the known entries of ``y`` (NaN = unknown); the
    best epoch's weights on a held-out tenth of the prompts. With n-gram rows in ``x``, the
    tower has a wide term (module doc) under L2 ``wide_decay``."""
    d, m, h = x.shape[1], y.shape[1], options.hidden
    buckets, used = 0, None
    if x.ngrams is not None:
        # Only the buckets some training prompt hits can move from zero (their gradient is
        # the only one that is not 0): train those rows alone (the same fit, far less work
        # for small data), then put them back in place.
        buckets = x.ngrams.shape[1]
        used = np.unique(x.ngrams.indices)
        x = Inputs(x.dense, x.ngrams[:, used])

    def init(prior: FloatArray) -> dict[str, FloatArray]:
        net = {
            "w1": (rng.standard_normal((d, h)) * np.sqrt(2.0 / d)).astype(np.float32),
            "b1": np.zeros(h, dtype=np.float32),
            "w2": (rng.standard_normal((h, dim)) * np.sqrt(1.0 / h)).astype(np.float32),
            "v": (rng.standard_normal((dim, m)) * np.sqrt(1.0 / dim)).astype(np.float32),
            "c": np.log(prior / (1 - prior)).astype(np.float32),  # each model's average
        }
        if x.ngrams is not None:
            net["ws"] = np.zeros((x.ngrams.shape[1], dim), dtype=np.float32)
        return net

    def gradients(
        net: Mapping[str, FloatArray],
        batch: Any,
        targets: NDArray[Any],
        mask: NDArray[Any],
        decay: float,
    ) -> dict[str, FloatArray]:
        return _gradients(net, batch, targets, mask, decay, wide_decay)

    net = fit_masked(x, y, options, rng, init, gradients, _loss)  # type: ignore[arg-type]
    if used is not None:
        full: Any = np.zeros((buckets, dim), dtype=np.float32)
        full[used] = net["ws"]
        net["ws"] = full
    return net


def _loss(net: Mapping[str, FloatArray], x: Inputs, y: NDArray[Any], mask: NDArray[Any]) -> float:
    p = np.clip(probabilities(net, tower(net, x)), 1e-7, 1 - 1e-7)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * mask
    return float(bce.sum() / max(mask.sum(), 1.0))


def _gradients(
    net: Mapping[str, FloatArray],
    x: Inputs,
    y: NDArray[Any],
    mask: NDArray[Any],
    decay: float,
    wide_decay: float,
) -> dict[str, FloatArray]:
    hidden, z = deep(net, x)
    p = probabilities(net, z)
    d_logits = ((p - y) * mask / max(float(mask.sum()), 1.0)).astype(np.float32)
    d_z = d_logits @ net["v"].T
    d_hidden = (d_z @ net["w2"].T) * (hidden > 0)
    wide = {}
    if "ws" in net:
        wide["ws"] = np.asarray(x.ngrams.T @ d_z, dtype=np.float32) + wide_decay * net["ws"]
    return {
        **wide,
        "w1": x.dense.T @ d_hidden + decay * net["w1"],
        "b1": d_hidden.sum(axis=0),
        "w2": hidden.T @ d_z + decay * net["w2"],
        "v": z.T @ d_logits + decay * net["v"],
        "c": d_logits.sum(axis=0),
    }
