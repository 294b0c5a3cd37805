"""``knn``: a model's expected quality on a prompt is its score on the most similar prompts.

Similarity is the cosine of the embeddings (a dot product: they are unit vectors). The
prediction for model j is the average of the k nearest training prompts' scores for j,
weighted by similarity when ``weighted`` (a neighbour at cosine 0.9 counts more than one at
0.5); unknown scores (NaN) are left out of the average, and a model with no known score
among the k falls back to its training average. Simple, strong on data with many near
duplicates, and the baseline the other learned routers must beat.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyroute.embeddings.base import Embedder, Float32Array, blas_thread_limiter
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.learned import LearnedRouter, check_finite
from polyroute.routing.tradeoff import FloatArray

#: Queries are scored against the training set this many at a time (bounds memory).
_CHUNK = 256
#: Blocks this small are scored on one BLAS thread: waking BLAS's worker threads for one
#: serving query costs more than it saves (5-10 ms at p50 on a busy 2-core machine, against
#: ~0.3 ms for the whole product on one thread).
_ONE_THREAD_BELOW = 16


@functools.cache
def _one_blas_thread() -> Any:
    return blas_thread_limiter(1)


@ROUTERS.register("knn")
class KNNRouter(LearnedRouter):
    """k-nearest-neighbours quality prediction on prompt embeddings."""

    kind = "knn"

    def __init__(
        self,
        name: str = "knn",
        *,
        k: int = 40,
        weighted: bool = True,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(name, embedder=embedder)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.weighted = weighted
        self._keys: Float32Array = np.zeros((0, 0), dtype=np.float32)
        self._scores: FloatArray = np.zeros((0, 0))
        self._prior: FloatArray = np.zeros(0)

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "weighted": self.weighted}

    def _fit(
        self,
        embeddings: Float32Array,
        scores: FloatArray,
        texts: Sequence[str] | None,
        tasks: FloatArray | None = None,
    ) -> None:
        self._keys = np.ascontiguousarray(embeddings, dtype=np.float32)
        self._scores = scores.astype(np.float32).astype(np.float64)
        self._prior = np.nanmean(scores, axis=0)

    def state(self) -> dict[str, NDArray[Any]]:
        return {"keys": self._keys, "scores": self._scores.astype(np.float32), "prior": self._prior}

    def load_state(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        self._keys = np.ascontiguousarray(arrays["keys"], dtype=np.float32)
        self._scores = np.asarray(arrays["scores"], dtype=np.float64)
        self._prior = np.asarray(arrays["prior"], dtype=np.float64)

    def predict_embeddings(
        self, embeddings: Float32Array, texts: Sequence[str] | None = None
    ) -> FloatArray:
        if embeddings.ndim != 2 or embeddings.shape[1] != self._keys.shape[1]:
            raise ValueError(
                f"expected (n, {self._keys.shape[1]}) embeddings, got {embeddings.shape}"
            )
        out = np.empty((embeddings.shape[0], len(self.models)))
        for start in range(0, embeddings.shape[0], _CHUNK):
            block = np.asarray(embeddings[start : start + _CHUNK], dtype=np.float32)
            out[start : start + _CHUNK] = self._predict_block(block)
        return check_finite(out, f"knn router {self.name!r}")

    def _predict_block(self, queries: Float32Array) -> FloatArray:
        k = min(self.k, self._keys.shape[0])
        if queries.shape[0] < _ONE_THREAD_BELOW:
            with _one_blas_thread()():
                sims = queries @ self._keys.T  # (q, n)
        else:
            sims = queries @ self._keys.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (q, k), unordered
        near_sims = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        weights = np.maximum(near_sims, 1e-6) if self.weighted else np.ones_like(near_sims)
        near = self._scores[top]  # (q, k, m)
        known = np.isfinite(near)
        w = weights[:, :, None] * known
        total = w.sum(axis=1)
        summed = (np.where(known, near, 0.0) * w).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = summed / total
        return np.where(total > 0, mean, self._prior[None, :])
