"""The default routing embedding: the mean of all-MiniLM-L6-v2's own token embeddings.

A prompt's vector is the average of the rows of MiniLM's input embedding table
(``embeddings.word_embeddings.weight``, 30,522 × 384) for the prompt's WordPiece tokens,
L2-normalised: a static, bag-of-tokens embedding. It costs a tokenisation and one table
gather (about 0.5 ms for 200 tokens, against ~130 ms for the six-layer encoder in numpy on
this project's 2-core machine), and needs no file beyond the MiniLM package it is read from.

Why it is good enough for routing: on LLMRouter's data (5-fold cross-validation on its
5,608 training prompts) the mlp router reaches the same AIQ on it as on the full encoder's
sentence embeddings (0.630 against 0.631); see docs/routers.md ("Embeddings") for the
figures and the alternatives measured (a token window through the encoder, a distilled
per-token table).

Only the first :data:`MAX_TOKENS` tokens count, and the text is cut to
:data:`MAX_CHARS` before tokenising, so that a huge prompt costs a bounded time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from polyroute.embeddings.base import Float32Array, IntArray
from polyroute.embeddings.minilm import (
    DIM,
    MODEL_ID,
    WEIGHTS_SHA256,
    ModelFiles,
    locate_model,
    verify_weights,
)

#: What this embedding is, in router manifests.
STATIC_MODEL_ID = f"{MODEL_ID} (static: mean of input token embeddings)"
#: The recipe, versioned: changing how vectors are made must change the fingerprint.
RECIPE = "polyroute-static-mean/v1"
#: Identifies the weights and the recipe (router manifests, the embedding cache).
STATIC_FINGERPRINT = hashlib.sha256(f"{RECIPE}:{WEIGHTS_SHA256}".encode()).hexdigest()
MAX_TOKENS = 512
#: English runs at 4-5 characters a token; 16 per token never cuts before MAX_TOKENS there.
MAX_CHARS = 16 * MAX_TOKENS
TABLE = "embeddings.word_embeddings.weight"
#: [CLS]: the vector of an empty prompt, which has no token of its own.
CLS_ID = 101


class StaticMiniLMEmbedder:
    """Prompt → mean of MiniLM's input token embeddings → unit vector (384 dimensions).

    Reads only the token table from the MiniLM weights (checked against their sha256).
    Thread-safe: the table is read-only.
    """

    model_id = STATIC_MODEL_ID
    fingerprint = STATIC_FINGERPRINT
    dim = DIM

    def __init__(self, files: ModelFiles | None = None, *, verify: bool = True) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        files = files or locate_model()
        if verify:
            verify_weights(files.weights)
        with safe_open(str(files.weights), framework="np") as f:
            self._table: Float32Array = np.ascontiguousarray(f.get_tensor(TABLE), dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def count_tokens(self, texts: Sequence[str]) -> IntArray:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return np.array([len(e.ids) for e in encodings], dtype=np.int64)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The tokens that count: the first :data:`MAX_TOKENS` of each text cut to
        :data:`MAX_CHARS` (shared with :mod:`polyroute.embeddings.lexical`)."""
        cut = [t[:MAX_CHARS] for t in texts]
        encodings = self._tokenizer.encode_batch(cut, add_special_tokens=False)
        return [e.ids[:MAX_TOKENS] for e in encodings]

    def embed_ids(self, ids: Sequence[Sequence[int]]) -> Float32Array:
        """Unit vectors of token id lists (as :meth:`token_ids` returns them)."""
        out = np.empty((len(ids), DIM), dtype=np.float32)
        for row, row_ids in enumerate(ids):
            # A sum has the mean's direction; the norm below is all that differs.
            vector = self._table[list(row_ids) or [CLS_ID]].sum(axis=0)
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return out

    def embed(self, texts: Sequence[str]) -> Float32Array:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        return self.embed_ids(self.token_ids(texts))
