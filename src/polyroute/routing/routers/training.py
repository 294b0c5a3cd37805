"""What the neural learned routers share: masked-BCE training with Adam and early stopping.

``mlp`` and ``mf`` differ in their networks (how a prompt's embedding and a model become a
predicted quality), not in how they learn: both fit the known entries of a prompts × models
score matrix (NaN = unknown, masked out of the loss), with Adam, weight decay and early
stopping on a held-out tenth of the prompts. Each passes its initial weights, its gradients
and its loss to :func:`fit_masked`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import threadpoolctl  # type: ignore[import-untyped]
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


def task_columns(tasks: Sequence[str | None] | None, rows: int) -> FloatArray | None:
    """Each prompt's task as one-hot columns (rows, tasks): 1 for its task, 0 for the others,
    NaN (unknown) for a prompt with no task; None with fewer than two tasks (nothing to tell
    apart). A learned family may train on them beside the scores (``mf``'s task heads)."""
    if tasks is None:
        return None
    if len(tasks) != rows:
        raise ValueError(f"{len(tasks)} tasks for {rows} prompts")
    names = sorted({t for t in tasks if t is not None})
    if len(names) < 2:
        return None
    column = {t: j for j, t in enumerate(names)}
    out = np.zeros((rows, len(names)))
    for i, task in enumerate(tasks):
        if task is None:
            out[i] = np.nan
        else:
            out[i, column[task]] = 1.0
    return out


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


def fit_ensemble(
    train: Callable[[np.random.Generator], Net], *, seed: int, members: int
) -> list[Net]:
    """``members`` networks, each from its own seeded generator; 1 BLAS thread while fitting.

    Batches of 128 × 384 gain nothing from BLAS threads, and on a busy machine spinning
    threads made training 40× slower (measured: 22 s against 15+ min).
    """
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        return [train(np.random.default_rng([seed, i])) for i in range(members)]


def ensemble_state(nets: list[Net]) -> dict[str, NDArray[Any]]:
    """An ensemble's weights as flat arrays named ``MEMBER.WEIGHT`` (saved in arrays.npz)."""
    return {f"{i}.{k}": v for i, net in enumerate(nets) for k, v in net.items()}


def ensemble_from_state(arrays: Mapping[str, NDArray[Any]]) -> list[Net]:
    """What :func:`ensemble_state` flattened, back as one weights dict per member."""
    nets: dict[int, Net] = {}
    for key, value in arrays.items():
        i, _, part = key.partition(".")
        nets.setdefault(int(i), {})[part] = np.asarray(value, dtype=np.float32)
    return [nets[i] for i in sorted(nets)]


def checked_input(nets: list[Net], embeddings: Float32Array) -> Float32Array:
    """``embeddings`` as float32, or ValueError when their width is not the first layer's."""
    x = np.asarray(embeddings, dtype=np.float32)
    width = nets[0]["w1"].shape[0] if nets else 0
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"expected (n, {width}) embeddings, got {embeddings.shape}")
    return x


#: Elements of a weight array updated per pass of :meth:`Adam.step`: 512 KB of float32, so
#: that the few arrays one pass reads stay in cache. On this project's 2-core machine a step
#: over mf's wide term (110k × 16) took 7.2 ms whole and 5.1 ms in such chunks, and two fits'
#: steps on two threads 11 ms and 5.9 ms; much smaller chunks were slower on two threads
#: (each numpy call takes the GIL). ``benchmarks/train_time.py`` times whole fits.
ADAM_CHUNK = 1 << 17


class Adam:
    def __init__(self, params: dict[str, FloatArray], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: Mapping[str, FloatArray], b1: float = 0.9, b2: float = 0.999) -> None:
        """One textbook Adam update, in place, a cache-sized chunk at a time.

        mf's wide term has millions of weights. Written array by array, the dozen
        operations of an update each stream the whole array through memory (once with
        temporaries, which were most of its training time, then in place), and two fits on
        two threads then wait on the memory bus rather than compute. Chunk by chunk, the
        operations run on data in cache. Each element gets the same operations in the same
        order either way, so the float32 results are the same, bit for bit.
        """
        self.t += 1
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for k, g in grads.items():
            p, m, v = self.params[k], self.m[k], self.v[k]
            flat = p.size > ADAM_CHUNK and all(a.flags.c_contiguous for a in (p, m, v))
            if not flat:
                _adam_update(p, m, v, g, c1, c2, self.lr, b1, b2)
                continue
            pf, mf, vf = p.reshape(-1), m.reshape(-1), v.reshape(-1)  # views: contiguous
            gf = np.ascontiguousarray(g).reshape(-1)
            for start in range(0, pf.size, ADAM_CHUNK):
                part = slice(start, start + ADAM_CHUNK)
                _adam_update(pf[part], mf[part], vf[part], gf[part], c1, c2, self.lr, b1, b2)


def _adam_update(
    p: FloatArray,
    m: FloatArray,
    v: FloatArray,
    g: FloatArray,
    c1: float,
    c2: float,
    lr: float,
    b1: float,
    b2: float,
) -> None:
    """``p``, ``m`` and ``v`` updated in place from ``g`` (same shapes)."""
    m *= b1
    m += (1 - b1) * g
    v *= b2
    g2 = (1 - b2) * g
    g2 *= g
    v += g2
    denominator = np.divide(v, c2, out=g2)
    np.sqrt(denominator, out=denominator)
    denominator += 1e-8
    update = m / c1
    update *= lr
    update /= denominator
    p -= update.astype(np.float32, copy=False)
