"""What the neural learned routers share: masked-BCE training with Adam and early stopping.

``mlp`` and ``mf`` differ in their networks (how a prompt's embedding and a model become a
predicted quality), not in how they learn: both fit the known entries of a prompts × models
score matrix (NaN = unknown, masked out of the loss), with Adam, weight decay and early
stopping on a held-out tenth of the prompts. Each passes its initial weights, its gradients
and its loss to :func:`fit_masked`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyroute.embeddings.base import Float32Array
from polyroute.routing.tradeoff import FloatArray

Net = dict[str, FloatArray]
#: (net, x, targets, mask, weight decay) → gradients by weight name.
Gradients = Callable[
    [Mapping[str, FloatArray], NDArray[Any], NDArray[Any], NDArray[Any], float], Net
]
#: (net, x, targets, mask) → mean masked loss.
Loss = Callable[[Mapping[str, FloatArray], NDArray[Any], NDArray[Any], NDArray[Any]], float]


@dataclass(frozen=True, slots=True)
class TrainingOptions:
    hidden: int = 128
    weight_decay: float = 1e-4
    learning_rate: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10
    validation_fraction: float = 0.1


def fit_masked(
    x: Float32Array,
    y: FloatArray,
    options: TrainingOptions,
    rng: np.random.Generator,
    init: Callable[[FloatArray], Net],
    gradients: Gradients,
    loss: Loss,
) -> Net:
    """Weights fitted to the known entries of ``y``: the best epoch's on the held-out tenth.

    ``init`` gets each model's mean score (clipped into (0, 1)) to start its bias from.
    """
    n = x.shape[0]
    known = np.isfinite(y).astype(np.float32)
    target = np.nan_to_num(y, nan=0.0).astype(np.float32)
    order = rng.permutation(n)
    n_val = max(1, int(n * options.validation_fraction)) if n >= 20 else 0
    val, fit = order[:n_val], order[n_val:]
    net = init(np.clip(np.nanmean(y, axis=0), 1e-3, 1 - 1e-3))
    adam = Adam(net, options.learning_rate)
    # Small datasets would get one step an epoch and stop long before they fit: keep at
    # least eight batches an epoch.
    batch = max(8, min(options.batch_size, len(fit) // 8))
    best, best_loss, stale = {k: v.copy() for k, v in net.items()}, np.inf, 0
    for _ in range(options.max_epochs):
        rng.shuffle(fit)
        for start in range(0, len(fit), batch):
            rows = fit[start : start + batch]
            adam.step(gradients(net, x[rows], target[rows], known[rows], options.weight_decay))
        if n_val == 0:
            best = net
            continue
        value = loss(net, x[val], target[val], known[val])
        if value < best_loss - 1e-5:
            best, best_loss, stale = {k: v.copy() for k, v in net.items()}, value, 0
        else:
            stale += 1
            if stale >= options.patience:
                break
    return best


class Adam:
    def __init__(self, params: dict[str, FloatArray], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: Mapping[str, FloatArray], b1: float = 0.9, b2: float = 0.999) -> None:
        self.t += 1
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            self.params[k] -= (
                self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + 1e-8)
            ).astype(np.float32)
