"""Hashed word and character n-grams of a prompt, as a sparse row: the input of ``mf``'s wide term.

A dense prompt vector (:mod:`polyroute.embeddings.lexical`: 384 static dimensions beside
512 + 512 hashed buckets) has room for a few thousand n-grams at most, and a router reading
it through a 128-unit layer keeps fewer. A sparse linear model over a large vocabulary keeps
the rest: which exact words and word pairs occur, and the text's character surface. Measured
before it was built (``benchmarks/wide_stacking.py``; docs/routers.md, "A wide lexical
part?"): a factorised linear term over these features, added to mf's tower, raised
train-CV AIQ on LLMRouter's data from 0.6271 to 0.6326 and cut the cost of keeping 98% of
the best model's quality from 0.27× to 0.22×.

The features (scikit-learn's :class:`~sklearn.feature_extraction.text.HashingVectorizer`,
whose MurmurHash3 with seed 0 gives the same buckets on every platform and process):

- **words**: lower-cased word 1- and 2-grams (the default token pattern), hashed into
  ``2**bits`` buckets;
- **characters**: ``char_wb`` 3- to 5-grams (within word boundaries), hashed into
  ``2**bits`` buckets;

each block with sublinear term frequency (1 + log count) and L2-normalised, the two side by
side and scaled by 1/√2 (a unit row). Nothing is fitted on data (no IDF, no vocabulary), so
the features are a pure function of the text and :data:`RECIPE` pins them: a router trained
on one recipe is refused by another.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Every constant that changes the features (a new recipe makes a new feature space).
RECIPE = "polyroute-ngrams/v1:sklearn-hashing:words=1-2:char_wb=3-5:sublinear:l2:1/sqrt2"
NGRAMS_FINGERPRINT = hashlib.sha256(RECIPE.encode()).hexdigest()
#: Text beyond this many characters is not read (as the static embedding truncates).
MAX_CHARS = 8_000


def width(bits: int) -> int:
    """Columns of :func:`ngram_features` for ``bits``: two blocks of 2^bits buckets."""
    return int(2 * 2**bits)


@functools.lru_cache(maxsize=4)
def _vectorizers(bits: int) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    common: dict[str, Any] = {
        "n_features": 2**bits,
        "alternate_sign": False,
        "norm": None,
        "dtype": np.float32,
    }
    words = HashingVectorizer(ngram_range=(1, 2), **common)
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
    return words, chars


def ngram_features(texts: Sequence[str], bits: int) -> Any:
    """``(len(texts), width(bits))`` float32 CSR matrix, each non-empty row of unit length."""
    if not 1 <= bits <= 24:
        raise ValueError(f"bits must be in 1..24, got {bits}")
    from scipy.sparse import hstack
    from sklearn.preprocessing import normalize

    clipped = [t[:MAX_CHARS] for t in texts]
    blocks = []
    for vectorizer in _vectorizers(bits):
        counts = vectorizer.transform(clipped).tocsr()
        counts.data = (1.0 + np.log(counts.data)).astype(np.float32)
        blocks.append(normalize(counts, copy=False))
    out = hstack(blocks, format="csr", dtype=np.float32)
    out.data *= np.float32(1.0 / math.sqrt(2.0))
    return out
