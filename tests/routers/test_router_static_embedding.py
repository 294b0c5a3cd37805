"""The default routing embedding: the mean of MiniLM's own input token embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from polyroute.embeddings.base import Embedder
from polyroute.embeddings.minilm import MODEL_ID, WEIGHTS_SHA256, ModelFiles, locate_model
from polyroute.embeddings.registry import (
    DEFAULT_EMBEDDING,
    EMBEDDINGS,
    default_embedder,
    embedding_choice,
    find_choice,
    get_embedder,
)
from polyroute.embeddings.static import MAX_TOKENS, StaticMiniLMEmbedder
from polyroute.errors import ModelUnavailable


@pytest.fixture(scope="module")
def static() -> StaticMiniLMEmbedder:
    return StaticMiniLMEmbedder()


def test_is_the_mean_of_the_models_token_table(static: StaticMiniLMEmbedder) -> None:
    table = load_file(str(locate_model().weights))["embeddings.word_embeddings.weight"]
    # "route this prompt" in all-MiniLM-L6-v2's WordPiece vocabulary.
    ids = [static._tokenizer.token_to_id(t) for t in ("route", "this", "prompt")]
    expected = table[ids].mean(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(static.embed(["Route this prompt"])[0], expected, atol=1e-6)


def test_unit_vectors_batching_changes_nothing(static: StaticMiniLMEmbedder) -> None:
    texts = ["short", "a somewhat longer sentence about routing models", ""]
    batch = static.embed(texts)
    assert batch.shape == (3, 384) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(batch, np.stack([static.embed([t])[0] for t in texts]))
    assert static.embed([]).shape == (0, 384)
    assert isinstance(static, Embedder)


def test_similar_prompts_are_nearer_than_unrelated_ones(static: StaticMiniLMEmbedder) -> None:
    algebra, algebra2, poem = static.embed(
        [
            "Solve the equation 3x + 5 = 20 for x.",
            "Find x if 7x - 2 = 12; solve the equation.",
            "Write a short poem about autumn leaves falling in the forest.",
        ]
    )
    assert float(algebra @ algebra2) > float(algebra @ poem) + 0.1


def test_only_the_first_tokens_count_but_all_are_counted(static: StaticMiniLMEmbedder) -> None:
    head = "alpha " * MAX_TOKENS
    a, b = static.embed([head + "physics chemistry", head + "poetry painting"])
    np.testing.assert_array_equal(a, b)
    short_a, short_b = static.embed(["alpha physics", "alpha poetry"])
    assert not np.allclose(short_a, short_b)
    assert static.count_tokens([head + "physics", "two words"]).tolist() == [MAX_TOKENS + 1, 2]


def test_has_its_own_identity_beside_the_default(static: StaticMiniLMEmbedder) -> None:
    # The default is minilm-lexical (tests/routers/test_router_lexical_embedding.py).
    assert DEFAULT_EMBEDDING == "minilm-lexical"
    assert default_embedder() is get_embedder()  # loaded once per process
    assert isinstance(get_embedder("minilm-static"), StaticMiniLMEmbedder)
    # Its own fingerprint: routers and the embedding cache never mix it with the encoder's.
    assert static.fingerprint != WEIGHTS_SHA256
    assert find_choice(static.model_id, static.fingerprint) is EMBEDDINGS["minilm-static"]
    assert find_choice(MODEL_ID, WEIGHTS_SHA256) is EMBEDDINGS["minilm"]
    assert find_choice(MODEL_ID, static.fingerprint) is None
    with pytest.raises(ValueError, match="unknown embedding 'bert'; choose one of: minilm-static"):
        embedding_choice("bert")


def test_altered_weights_are_refused(tmp_path: Path) -> None:
    real = locate_model()
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"x" * 100)
    with pytest.raises(ModelUnavailable, match="100 bytes"):
        StaticMiniLMEmbedder(ModelFiles(fake, real.tokenizer, real.config))
