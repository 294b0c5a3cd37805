"""``minilm-lexical``: the static MiniLM vector joined with hashed word and character n-grams.

The static embedding (:mod:`polyroute.embeddings.static`) averages token vectors, and an
average forgets what a router can use: which exact words occur ("integral", "def",
"Which of the following"), the surface of the text (``$``, ``\\frac``, digits, code
indentation) and its length. A tf-idf + logistic-regression baseline beat our static-vector
router on RouteLLM's MMLU set for that reason. This embedding keeps both signals:

- **words**: the prompt's WordPiece token ids (the static embedding's own tokenisation, so
  it is done once) and their bigrams, hashed into :data:`WORD_BUCKETS` buckets;
- **characters**: the lower-cased text's byte 3-, 4- and 5-grams (whitespace runs collapsed),
  hashed into :data:`CHAR_BUCKETS` buckets;
- **shape**: a few pseudo-words in the word block: the log2 length in tokens, the number of
  lines, the share of digits, of non-letters, and of capital letters;

each block with sublinear term frequency (1 + log count) and L2-normalised, the two lexical
blocks averaged, and the whole placed beside the static vector:
``[cos θ · static, sin θ · lexical]``, a unit vector. θ (:data:`LEXICAL_WEIGHT` = sin θ)
was chosen by cross-validation on LLMRouter's training prompts only
(``benchmarks/heldout_routing.py --tune``; docs/routers.md, "Held-out protocols").

There is no learned IDF: nothing here depends on the data a router is trained on, so the
embedding is a pure function of the text and a router directory needs nothing beyond its
manifest's fingerprint to find it again. (The mlp router learns a weight per bucket in its
first layer, which subsumes an IDF. Measured by 5-fold CV on LLMRouter's train split, with
1,024 + 1,024 buckets, an IDF fitted on each fold's training prompts left mlp's AIQ as it
was, 0.632, and lowered knn's from 0.621 to 0.617.)

Hashing is a multiplicative hash of n-gram codes computed with numpy integer arithmetic
(uint64, wrapping), the same on every platform and Python (not ``hash()``, which is salted
per process). The recipe and its constants are part of :data:`LEXICAL_FINGERPRINT`:
changing any of them makes a new embedding, and routers trained on the old one are refused
with a message saying to retrain. About 0.5 ms for a 200-token prompt on top of the static
embedding's 0.5 ms (``benchmarks/routing_latency.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from polyroute.embeddings.base import Float32Array, IntArray
from polyroute.embeddings.minilm import DIM as STATIC_DIM
from polyroute.embeddings.minilm import MODEL_ID, WEIGHTS_SHA256, ModelFiles
from polyroute.embeddings.static import MAX_CHARS, StaticMiniLMEmbedder

WORD_BUCKETS = 512
CHAR_BUCKETS = 512
CHAR_NGRAMS = (3, 4, 5)
#: sin θ: the lexical block's share of the unit vector (the static one gets cos θ).
LEXICAL_WEIGHT = 0.65
DIM = STATIC_DIM + WORD_BUCKETS + CHAR_BUCKETS

LEXICAL_MODEL_ID = f"{MODEL_ID} (static) + hashed word/char n-grams"
#: The recipe, versioned, with every constant that changes the vectors.
RECIPE = (
    f"polyroute-lexical/v1:words={WORD_BUCKETS}:chars={CHAR_BUCKETS}:"
    f"ngrams={','.join(map(str, CHAR_NGRAMS))}:weight={LEXICAL_WEIGHT}"
)
LEXICAL_FINGERPRINT = hashlib.sha256(f"{RECIPE}:{WEIGHTS_SHA256}".encode()).hexdigest()

_U64 = np.uint64
#: Knuth's multiplicative constant (2^64 / golden ratio): spreads codes over the high bits.
_MIX = _U64(0x9E3779B97F4A7C15)
_BASE = _U64(257)
_UNIGRAM, _BIGRAM = _U64(1), _U64(2)


def _buckets(codes: NDArray[np.uint64], salt: int, buckets: int) -> NDArray[np.int64]:
    """Bucket of each code: the top bits of (code + salt) × the golden-ratio constant."""
    with np.errstate(over="ignore"):
        mixed = (codes + _U64(salt) * _MIX) * _MIX
    return (mixed >> _U64(40)).astype(np.int64) % buckets


def _sublinear_unit(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """1 + log(count) where a count is positive, then L2-normalised (zeros stay zeros)."""
    out = np.zeros_like(counts)
    hit = counts > 0
    out[hit] = 1.0 + np.log(counts[hit])
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


def word_features(ids: Sequence[int], text: str, buckets: int = WORD_BUCKETS) -> Float32Array:
    """Hashed token unigrams, bigrams and shape pseudo-words; sublinear tf, unit length."""
    tokens = np.asarray(ids, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bigrams = tokens[:-1] * _U64(1_000_003) + tokens[1:]
    shape = np.asarray(_shape_words(len(ids), text), dtype=np.uint64)
    counts = np.bincount(
        np.concatenate(
            [
                _buckets(tokens, 1, buckets),
                _buckets(bigrams, 2, buckets),
                _buckets(shape, 3, buckets),
            ]
        ),
        minlength=buckets,
    ).astype(np.float64)
    return _sublinear_unit(counts).astype(np.float32)


def _shape_words(n_tokens: int, text: str) -> list[int]:
    """Codes for coarse facts about the text's form, each a pseudo-word of its own."""
    chars = max(len(text), 1)
    digits = sum(c.isdigit() for c in text) / chars
    letters = sum(c.isalpha() for c in text) / chars
    upper = sum(c.isupper() for c in text) / chars
    lines = text.count("\n") + 1
    facts = (
        int(math.log2(n_tokens + 1)),
        min(int(math.log2(lines)), 8),
        min(int(digits * 20), 10),
        min(int((1 - letters) * 10), 10),
        min(int(upper * 40), 10),
    )
    return [(kind << 8) + value for kind, value in enumerate(facts)]


def char_features(text: str, buckets: int = CHAR_BUCKETS) -> Float32Array:
    """Hashed byte n-grams of the lower-cased, whitespace-collapsed text; sublinear, unit."""
    data = np.frombuffer(" ".join(text.lower().split()).encode("utf-8"), dtype=np.uint8)
    data = data.astype(np.uint64)
    parts = []
    for n in CHAR_NGRAMS:
        if len(data) < n:
            continue
        width = len(data) - n + 1
        code = np.zeros(width, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                code = code * _BASE + data[k : k + width]
        parts.append(_buckets(code, 10 + n, buckets))
    if not parts:
        return np.zeros(buckets, dtype=np.float32)
    counts = np.bincount(np.concatenate(parts), minlength=buckets).astype(np.float64)
    return _sublinear_unit(counts).astype(np.float32)


class LexicalEmbedder:
    """Prompt → ``[cos θ · static MiniLM vector, sin θ · hashed n-grams]`` (unit, :data:`DIM`).

    ``weight`` (sin θ) and the bucket counts are for experiments (the tuning in
    ``benchmarks/heldout_routing.py``): an embedder with other values gets its own
    fingerprint, which no registered embedding has.
    """

    model_id = LEXICAL_MODEL_ID

    def __init__(
        self,
        files: ModelFiles | None = None,
        *,
        verify: bool = True,
        weight: float = LEXICAL_WEIGHT,
        word_buckets: int = WORD_BUCKETS,
        char_buckets: int = CHAR_BUCKETS,
        static: StaticMiniLMEmbedder | None = None,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must lie in [0, 1], got {weight}")
        if word_buckets < 1 or char_buckets < 1:
            raise ValueError("bucket counts must be >= 1")
        self._static = static or StaticMiniLMEmbedder(files, verify=verify)
        self.weight = weight
        self._words, self._chars = word_buckets, char_buckets
        self.dim = STATIC_DIM + word_buckets + char_buckets
        if (weight, word_buckets, char_buckets) == (LEXICAL_WEIGHT, WORD_BUCKETS, CHAR_BUCKETS):
            self.fingerprint = LEXICAL_FINGERPRINT
        else:
            recipe = RECIPE.replace(
                f"words={WORD_BUCKETS}:chars={CHAR_BUCKETS}",
                f"words={word_buckets}:chars={char_buckets}",
            ).replace(f"weight={LEXICAL_WEIGHT}", f"weight={weight}")
            self.fingerprint = hashlib.sha256(f"{recipe}:{WEIGHTS_SHA256}".encode()).hexdigest()

    def count_tokens(self, texts: Sequence[str]) -> IntArray:
        return self._static.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> Float32Array:
        static, words, chars = self.blocks(texts)
        return combine(static, words, chars, self.weight)

    def blocks(self, texts: Sequence[str]) -> tuple[Float32Array, Float32Array, Float32Array]:
        """The three unit blocks (static, words, characters) before :func:`combine`."""
        n = len(texts)
        words = np.zeros((n, self._words), dtype=np.float32)
        chars = np.zeros((n, self._chars), dtype=np.float32)
        if not texts:
            return np.zeros((0, STATIC_DIM), dtype=np.float32), words, chars
        cut = [t[:MAX_CHARS] for t in texts]
        ids = self._static.token_ids(cut)
        static = self._static.embed_ids(ids)
        if self.weight > 0.0:
            for row, (text, row_ids) in enumerate(zip(cut, ids, strict=True)):
                words[row] = word_features(row_ids, text, self._words)
                chars[row] = char_features(text, self._chars)
        return static, words, chars


def combine(
    static: Float32Array, words: Float32Array, chars: Float32Array, weight: float
) -> Float32Array:
    """``[cos θ · static, sin θ/√2 · words, sin θ/√2 · chars]`` with sin θ = ``weight``,
    each row renormalised (a prompt too short for any character n-gram has an empty block)."""
    cos = np.float32(math.sqrt(1.0 - weight * weight))
    half = np.float32(weight / math.sqrt(2.0))
    out = np.concatenate([static * cos, words * half, chars * half], axis=1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, np.float32(1e-12))
    return np.asarray(out, dtype=np.float32)
