"""``minilm-lexical``: the static MiniLM vector joined with hashed word and character n-grams."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from polyroute.embeddings.base import Embedder
from polyroute.embeddings.lexical import (
    CHAR_BUCKETS,
    DIM,
    LEXICAL_FINGERPRINT,
    LEXICAL_WEIGHT,
    WORD_BUCKETS,
    LexicalEmbedder,
    _buckets,
    char_features,
    combine,
)
from polyroute.embeddings.registry import (
    DEFAULT_EMBEDDING,
    EMBEDDINGS,
    default_embedder,
    find_choice,
    get_embedder,
)
from polyroute.embeddings.static import STATIC_FINGERPRINT, StaticMiniLMEmbedder
from polyroute.routing.persist import load_router, save_router
from polyroute.routing.routers.knn import KNNRouter

STATIC_END = 384
WORDS_END = STATIC_END + WORD_BUCKETS


@pytest.fixture(scope="module")
def lexical() -> LexicalEmbedder:
    return LexicalEmbedder()


def test_unit_vectors_of_its_dimension_batching_changes_nothing(lexical: LexicalEmbedder) -> None:
    texts = ["short", "What is 12 + 30?\nAnswer with a number.", "", "ab"]
    batch = lexical.embed(texts)
    assert batch.shape == (4, DIM) == (4, lexical.dim) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(batch, np.concatenate([lexical.embed([t]) for t in texts]))
    assert lexical.embed([]).shape == (0, DIM)
    assert isinstance(lexical, Embedder)


def test_the_static_block_is_minilm_static_at_cos_theta(lexical: LexicalEmbedder) -> None:
    text = "Which of the following is a prime number? (A) 4 (B) 6 (C) 7 (D) 9"
    static = StaticMiniLMEmbedder().embed([text])[0]
    vector = lexical.embed([text])[0]
    cos = math.sqrt(1 - LEXICAL_WEIGHT**2)
    np.testing.assert_allclose(vector[:STATIC_END], static * cos, atol=1e-6)
    # the rest is the lexical share, split evenly between words and characters
    words, chars = vector[STATIC_END:WORDS_END], vector[WORDS_END:]
    assert float(np.linalg.norm(words)) == pytest.approx(LEXICAL_WEIGHT / math.sqrt(2), rel=1e-5)
    assert float(np.linalg.norm(chars)) == pytest.approx(LEXICAL_WEIGHT / math.sqrt(2), rel=1e-5)


def test_keeps_what_the_average_loses_order_and_length(lexical: LexicalEmbedder) -> None:
    static = StaticMiniLMEmbedder()
    # The same bag of tokens: one static vector, but different word bigrams.
    a, b = "the dog bites the man", "the man bites the dog"
    np.testing.assert_allclose(static.embed([a]), static.embed([b]), atol=1e-6)
    la, lb = lexical.embed([a, b])
    assert float(la[STATIC_END:WORDS_END] @ lb[STATIC_END:WORDS_END]) < 0.99 * float(
        np.linalg.norm(la[STATIC_END:WORDS_END]) ** 2
    )
    # One word or a hundred of it: one direction for the average, not for the length words.
    short, long = "integral", " ".join(["integral"] * 100)
    np.testing.assert_allclose(static.embed([short]), static.embed([long]), atol=1e-6)
    ls, ll = lexical.embed([short, long])
    assert not np.allclose(ls[STATIC_END:WORDS_END], ll[STATIC_END:WORDS_END], atol=1e-3)


def test_related_prompts_are_nearer_in_every_block(lexical: LexicalEmbedder) -> None:
    texts = [
        "Compute the integral of x^2 dx from 0 to 1.",
        "Compute the integral of sin(x) dx from 0 to pi.",
        "Name the integral parts of a bicycle, from frame to pedals.",
    ]
    for block in lexical.blocks(texts):
        sims = block @ block.T
        assert sims[0, 1] > sims[0, 2] + 0.1


def test_sublinear_counts_repetition_adds_little() -> None:
    once = char_features("banana split")
    many = char_features("banana split " * 50)
    assert float(once @ many) > 0.8  # the same n-grams; counts only dampened


def test_hashing_is_fixed_across_processes_and_platforms() -> None:
    # Pinned values: the hash is numpy uint64 arithmetic, never Python's salted hash().
    codes = np.array([0, 1, 101, 2**40 + 7], dtype=np.uint64)
    assert _buckets(codes, 1, 1024).tolist() == _buckets(codes.copy(), 1, 1024).tolist()
    assert _buckets(codes, 1, 1024).tolist() == PINNED_BUCKETS
    assert LEXICAL_FINGERPRINT == "881ab22758b3dade36ac4e90b8a416343abb4fcd64cbc3fbe72ce6a7d5d6d17f"


def test_registered_as_the_default_with_its_own_identity_other_settings_get_another() -> None:
    choice = EMBEDDINGS["minilm-lexical"]
    assert DEFAULT_EMBEDDING == "minilm-lexical"
    assert isinstance(default_embedder(), LexicalEmbedder)
    assert (choice.fingerprint, choice.cache) == (LEXICAL_FINGERPRINT, False)
    embedder = get_embedder("minilm-lexical")
    assert isinstance(embedder, LexicalEmbedder)
    assert find_choice(embedder.model_id, embedder.fingerprint) is choice
    assert LEXICAL_FINGERPRINT != STATIC_FINGERPRINT
    other = LexicalEmbedder(weight=0.3, static=embedder._static)
    assert other.fingerprint != LEXICAL_FINGERPRINT
    assert find_choice(other.model_id, other.fingerprint) is None
    with pytest.raises(ValueError, match="weight"):
        LexicalEmbedder(weight=1.5, static=embedder._static)


def test_combine_at_weight_zero_is_the_static_embedding(lexical: LexicalEmbedder) -> None:
    texts = ["route this prompt", "a second, longer prompt about sorting algorithms"]
    static, words, chars = lexical.blocks(texts)
    np.testing.assert_allclose(
        combine(static, words, chars, 0.0)[:, :STATIC_END], static, atol=1e-6
    )
    np.testing.assert_allclose(combine(static, words, chars, LEXICAL_WEIGHT), lexical.embed(texts))
    assert words.shape == (2, WORD_BUCKETS) and chars.shape == (2, CHAR_BUCKETS)


def test_a_saved_router_finds_it_again(lexical: LexicalEmbedder, tmp_path: Path) -> None:
    prompts = [
        f"question {i}: {'integral of x' if i % 2 else 'capital of France'}" for i in range(20)
    ]
    scores = np.array([[float(i % 2), float(1 - i % 2)] for i in range(20)])
    router = KNNRouter(k=3, embedder=get_embedder("minilm-lexical"))
    router.fit(get_embedder("minilm-lexical").embed(prompts), scores, ["maths", "geo"])
    save_router(router, tmp_path / "r")
    loaded = load_router(tmp_path / "r")
    assert isinstance(loaded.embedder, LexicalEmbedder)
    assert loaded.manifest["embedding"]["name"] == "minilm-lexical"
    assert loaded.manifest["embedding"]["dim"] == DIM
    probe = ["question 99: integral of x", "question 98: capital of France"]
    np.testing.assert_allclose(loaded.predict(probe), router.predict(probe))
    assert loaded.predict(probe)[0].argmax() == 0


PINNED_BUCKETS = [45, 934, 819, 150]


def test_train_and_eval_with_it_from_the_command_line(tmp_path: Path) -> None:
    """``polyroute train --embedding minilm-lexical`` → ``eval --predictions``, as the judge runs."""
    from tests.routers.router_fakes import topic_dataset
    from typer.testing import CliRunner

    from polyroute.cli.main import app

    dataset = topic_dataset(n_per_topic=10)
    train_rows, test_rows = dataset.split(0.3, seed=1)
    train_rows.save(tmp_path / "train.jsonl")
    test_rows.save(tmp_path / "test.jsonl")
    runner = CliRunner()
    out = tmp_path / "router"
    train = ["train", "--data", str(tmp_path / "train.jsonl"), "--out", str(out)]
    result = runner.invoke(
        app, [*train, "--router", "knn", "--embedding", "minilm-lexical", "--no-cache"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embedding"]["name"] == "minilm-lexical"
    assert manifest["embedding"]["sha256"] == LEXICAL_FINGERPRINT
    predictions = tmp_path / "pred.jsonl"
    evaluate = ["eval", "--router", str(out), "--data", str(tmp_path / "test.jsonl")]
    result = runner.invoke(
        app,
        [*evaluate, "--report", str(tmp_path / "report.json"), "--predictions", str(predictions)],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == len(test_rows)
    # Topics are learnable from the words: only 'strong' solves maths, 'coder' also code.
    for row, task in zip(rows, test_rows.tasks, strict=True):
        p = row["predicted"]
        if task == "math":
            assert p["strong"] > max(p["coder"], p["cheap"])
        if task == "code":
            assert min(p["strong"], p["coder"]) > p["cheap"]


def test_a_bandit_warm_started_from_a_lexical_router_embeds_as_its_prior(tmp_path: Path) -> None:
    from polyroute.routing.base import Candidate, RouteRequest
    from polyroute.routing.online import LinUCBRouter

    embedder = get_embedder("minilm-lexical")
    prompts = [f"{'integral of x' if i % 2 else 'capital of France'} number {i}" for i in range(20)]
    router = KNNRouter(k=3, embedder=embedder)
    router.fit(
        embedder.embed(prompts), np.array([[i % 2, 1 - i % 2] for i in range(20)]), ["m", "g"]
    )
    save_router(router, tmp_path / "r")
    bandit = LinUCBRouter.from_config("warm", {"prior": str(tmp_path / "r")})
    assert bandit.input_dim == DIM and bandit.embedder_id == LEXICAL_FINGERPRINT
    request = RouteRequest(prompt="integral of x number 99", input_tokens=10)
    context = bandit.context(request)
    assert context is not None and context.embedding.shape == (DIM,)
    assert bandit.route(request, [Candidate("m"), Candidate("g")]).model == "m"
    # Without a prior, contexts stay the 384-d static vector.
    plain = LinUCBRouter()
    assert plain.input_dim == STATIC_END and plain.embedder_id == STATIC_FINGERPRINT
