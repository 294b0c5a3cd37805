"""What every prompt embedding is to the routers: the :class:`Embedder` protocol.

Routers depend on this protocol only; the embeddings themselves (the static MiniLM table by
default, the full MiniLM encoder, a third party's) live one module each beside it and are
chosen by name in :mod:`polyroute.embeddings.registry`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

Float32Array = NDArray[np.float32]
IntArray = NDArray[np.int64]


@runtime_checkable
class Embedder(Protocol):
    """Turns prompts into unit vectors; what the learned routers depend on."""

    #: Which model (e.g. ``sentence-transformers/all-MiniLM-L6-v2``).
    model_id: str
    #: Identifies the exact weights (sha256); stored in router manifests.
    fingerprint: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Float32Array:
        """``(len(texts), dim)`` float32, each row L2-normalised."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> IntArray:
        """Tokens per text, untruncated (for cost estimates)."""
        ...


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache, for training and offline evaluation.

    Vectors are kept per text (by sha256) in ``.npz`` shards under
    ``cache_dir/<weights fingerprint>/``; each call that embeds something new adds a shard.
    Never used on the serving path.
    """

    def __init__(self, inner: Embedder, cache_dir: Path) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.fingerprint = inner.fingerprint
        self.dim = inner.dim
        self.dir = cache_dir / inner.fingerprint[:16]
        self._known: dict[str, Float32Array] | None = None

    def count_tokens(self, texts: Sequence[str]) -> IntArray:
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> Float32Array:
        known = self._load()
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.items())
        if todo:
            fresh = self.inner.embed([texts[i] for _, i in todo])
            new_keys = [k for k, _ in todo]
            self._write(new_keys, fresh)
            known.update(zip(new_keys, fresh, strict=True))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = known[key]
        return out

    def _load(self) -> dict[str, Float32Array]:
        if self._known is None:
            self._known = {}
            for shard in sorted(self.dir.glob("*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        self._known.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
                except (OSError, ValueError, KeyError):
                    continue  # a damaged shard is only a cache miss
        return self._known

    def _write(self, keys: list[str], vectors: Float32Array) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        tmp = self.dir / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), vectors=vectors)
        tmp.replace(self.dir / f"{name}.npz")


_limit_lock = threading.Lock()


def blas_thread_limiter(threads: int | None) -> Any:
    """A factory of context managers capping BLAS threads (threadpoolctl), or no-ops."""
    if threads is None:
        return nullcontext
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return nullcontext
    with _limit_lock:
        controller = ThreadpoolController()

    def limit() -> AbstractContextManager[Any]:
        cm: AbstractContextManager[Any] = controller.limit(limits=threads, user_api="blas")
        return cm

    return limit
