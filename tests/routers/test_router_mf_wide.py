"""mf's wide term: hashed n-grams of the prompt's text beside its embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder

from polyroute.embeddings.ngrams import NGRAMS_FINGERPRINT, ngram_features, width
from polyroute.routing.online import LinUCBRouter, learned_prior
from polyroute.routing.online.linucb import PromptContext
from polyroute.routing.persist import load_router, save_router
from polyroute.routing.routers.mf import MFRouter

WORDS = ("integral", "recursion", "sonnet", "treaty", "enzyme", "harmony")


def test_ngram_rows_are_unit_deterministic_and_tell_texts_apart() -> None:
    texts = ["Solve the integral of x", "Write a sonnet about rain", "", "Solve the integral of x"]
    a = ngram_features(texts, bits=10)
    b = ngram_features(list(reversed(texts)), bits=10)
    assert a.shape == (4, width(10)) == (4, 2048)
    norms = np.sqrt(np.asarray(a.multiply(a).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms, [1.0, 1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(a[0].toarray(), b[3].toarray())  # a pure function of text
    assert abs(a[0] - a[1]).sum() > 0.5
    overlap = float(a[0].multiply(a[1]).sum())
    assert 0.0 < overlap < 0.5  # the texts share a few character n-grams, not most
    assert len(NGRAMS_FINGERPRINT) == 64
    with pytest.raises(ValueError, match="bits"):
        ngram_features(["x"], bits=0)


def lexical_data(n: int = 240, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Embeddings that carry no signal (noise) and texts whose one rare word decides which
    of two models answers: only the text can tell a router which to pick."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    words = rng.integers(0, len(WORDS), n)
    texts = [
        f"please answer this question about {WORDS[w]} number {i}" for i, w in enumerate(words)
    ]
    first = words < 3  # the first three words favour model a, the others model b
    scores = np.column_stack([first, ~first]).astype(np.float64)
    return x, texts, scores


def test_the_wide_term_learns_what_only_the_text_says() -> None:
    x, texts, scores = lexical_data()
    xt, tt, st = lexical_data(seed=1)
    wide = MFRouter(hidden=16, dim=4, ensemble=1, wide_bits=12, wide_decay=1e-5)
    deep = MFRouter(hidden=16, dim=4, ensemble=1, wide_bits=0)
    wide.fit(x, scores, ["a", "b"], texts)
    deep.fit(x, scores, ["a", "b"])
    assert wide.reads_text and not deep.reads_text
    accuracy = {
        name: float(np.mean(r.predict_embeddings(xt, tt).argmax(axis=1) == st.argmax(axis=1)))
        for name, r in (("wide", wide), ("deep", deep))
    }
    assert accuracy["wide"] > 0.95
    assert accuracy["deep"] < 0.75  # noise embeddings: about chance


def test_a_router_that_reads_text_says_so_when_it_is_missing() -> None:
    x, texts, scores = lexical_data(60)
    router = MFRouter(hidden=8, dim=2, ensemble=1, wide_bits=8)
    with pytest.raises(ValueError, match="texts="):
        router.fit(x, scores, ["a", "b"])
    with pytest.raises(ValueError, match="59 texts for 60"):
        router.fit(x, scores, ["a", "b"], texts[:59])
    router.fit(x, scores, ["a", "b"], texts)
    with pytest.raises(ValueError, match="texts="):
        router.predict_embeddings(x)
    with pytest.raises(ValueError, match="texts="):
        router.add_model("c", x[:5], scores[:5, 0])
    used = router.add_model("c", x[:5], scores[:5, 0], texts=texts[:5])
    assert used == 5 and router.models == ["a", "b", "c"]
    with pytest.raises(ValueError, match="wide_bits"):
        MFRouter(wide_bits=21)


def test_a_saved_wide_router_predicts_exactly_what_it_did(tmp_path: Path) -> None:
    embedder = TopicEmbedder()
    _x, texts, scores = lexical_data(120)
    router = MFRouter(hidden=8, dim=3, ensemble=2, wide_bits=10, embedder=embedder)
    router.fit(embedder.embed(texts), scores, ["a", "b"], texts)
    save_router(router, tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["params"]["wide_bits"] == 10
    with np.load(tmp_path / "r" / "arrays.npz") as arrays:
        assert arrays["model/0.ws"].dtype == np.float16 and arrays["model/0.ws"].shape == (
            width(10),
            3,
        )
    loaded = load_router(tmp_path / "r", embedder=embedder)
    assert isinstance(loaded, MFRouter) and loaded.reads_text
    probe = ["a question about sonnet", "a question about enzyme"]
    np.testing.assert_array_equal(loaded.predict(probe), router.predict(probe))


def test_another_ngram_recipe_is_refused_and_an_older_router_has_no_wide_term() -> None:
    x, texts, scores = lexical_data(60)
    wide = MFRouter(hidden=8, dim=2, ensemble=1, wide_bits=8)
    wide.fit(x, scores, ["a", "b"], texts)
    state = wide.state()
    state["ngrams_recipe"] = np.frombuffer(b"0" * 64, dtype=np.uint8)
    with pytest.raises(ValueError, match="another recipe"):
        MFRouter(hidden=8, dim=2, ensemble=1, wide_bits=8).load_state(state)
    # A router saved before mf had a wide term: its manifest has no wide_bits, so it is
    # built with the default (16), and its arrays say it has none.
    old = MFRouter(hidden=8, dim=2, ensemble=1, wide_bits=0)
    old.fit(x, scores, ["a", "b"])
    again = MFRouter(hidden=8, dim=2, ensemble=1)
    again.load_state(old.state())
    assert not again.reads_text
    np.testing.assert_array_equal(again.predict_embeddings(x), old.predict_embeddings(x))


def test_linucb_reads_a_wide_priors_text_from_its_context() -> None:
    embedder = TopicEmbedder()
    _x, texts, scores = lexical_data(120)
    router = MFRouter(hidden=8, dim=3, ensemble=1, wide_bits=10, embedder=embedder)
    router.fit(embedder.embed(texts), scores, ["a", "b"], texts)
    prior, _ = learned_prior(router)
    bandit = LinUCBRouter(dim=None, prior=prior, prior_name="wide", embedder=embedder, input_dim=8)
    from polyroute.routing.base import Candidate, RouteRequest

    request = RouteRequest(prompt="please answer this question about integral", input_tokens=8)
    context = bandit.context(request)
    assert isinstance(context, PromptContext) and context.text == request.prompt
    expected = router.predict([request.prompt])[0]
    decision = bandit.route_with_context(request, [Candidate("a"), Candidate("b")], context)
    assert decision.model == ["a", "b"][int(np.argmax(expected))]
    with pytest.raises(ValueError, match="reads the prompt's text"):
        bandit.update("a", 1.0, context.embedding)  # a bare embedding: the text is unknown
    bandit.update("a", 1.0, context)
