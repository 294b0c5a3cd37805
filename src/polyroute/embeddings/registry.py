"""The prompt embeddings a learned router can be trained on, by name, and the default.

==================  =========================================================  ==============
name                what                                                       200 tokens
==================  =========================================================  ==============
``minilm-lexical``  ``minilm-static`` joined with hashed word and character     ~0.9 ms
(default)           n-grams (:mod:`polyroute.embeddings.lexical`)
``minilm-static``   mean of all-MiniLM-L6-v2's input token embeddings          ~0.5 ms
                    (:mod:`polyroute.embeddings.static`)
``minilm``          the full all-MiniLM-L6-v2 sentence encoder in numpy        ~130 ms
                    (:mod:`polyroute.embeddings.minilm`)
==================  =========================================================  ==============

A router's manifest records the embedding's model id and fingerprint; loading a router
picks the embedding that matches them (:func:`embedder_for`), so a router trained with
``--embedding minilm`` keeps working with the encoder it learned from. An embedding this
polyroute does not have is an error that says to retrain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from polyroute.embeddings.base import Embedder
from polyroute.embeddings.lexical import LEXICAL_FINGERPRINT, LEXICAL_MODEL_ID, LexicalEmbedder
from polyroute.embeddings.minilm import MODEL_ID, WEIGHTS_SHA256, MiniLMEmbedder
from polyroute.embeddings.static import (
    STATIC_FINGERPRINT,
    STATIC_MODEL_ID,
    StaticMiniLMEmbedder,
)


@dataclass(frozen=True, slots=True)
class EmbeddingChoice:
    """One embedding, known without loading it (its identity is fixed by the weights' hash)."""

    name: str
    model_id: str
    fingerprint: str
    description: str
    load: Callable[[], Embedder]
    #: Worth an on-disk cache when training (the encoder is; a table lookup is not).
    cache: bool


EMBEDDINGS: dict[str, EmbeddingChoice] = {
    "minilm-static": EmbeddingChoice(
        "minilm-static",
        STATIC_MODEL_ID,
        STATIC_FINGERPRINT,
        "mean of all-MiniLM-L6-v2's input token embeddings (the fastest)",
        StaticMiniLMEmbedder,
        cache=False,
    ),
    "minilm-lexical": EmbeddingChoice(
        "minilm-lexical",
        LEXICAL_MODEL_ID,
        LEXICAL_FINGERPRINT,
        "minilm-static joined with hashed word and character n-grams (the default)",
        LexicalEmbedder,
        cache=False,
    ),
    "minilm": EmbeddingChoice(
        "minilm",
        MODEL_ID,
        WEIGHTS_SHA256,
        "the full all-MiniLM-L6-v2 sentence encoder (about 250× slower)",
        MiniLMEmbedder,
        cache=True,
    ),
}
#: Beats ``minilm-static`` on every held-out protocol of ``benchmarks/heldout_routing.py``
#: (docs/routers.md, "Held-out protocols") for ~0.4 ms more per decision.
DEFAULT_EMBEDDING = "minilm-lexical"


def embedding_choice(name: str) -> EmbeddingChoice:
    """The embedding called ``name``, or ValueError listing the known ones."""
    try:
        return EMBEDDINGS[name]
    except KeyError:
        raise ValueError(
            f"unknown embedding {name!r}; choose one of: {', '.join(EMBEDDINGS)}"
        ) from None


def get_embedder(name: str = DEFAULT_EMBEDDING) -> Embedder:
    """The process-wide instance of the embedding ``name`` (loaded once, on first use)."""
    choice = embedding_choice(name)
    return _loaded(choice.name, choice.model_id, choice.fingerprint)


@functools.cache
def _loaded(name: str, model_id: str, fingerprint: str) -> Embedder:
    # Keyed by identity too, so that a test that swaps a registry entry gets its own.
    return EMBEDDINGS[name].load()


def find_choice(model_id: str, fingerprint: str) -> EmbeddingChoice | None:
    """The known embedding with this identity (as a router manifest records it), if any."""
    for choice in EMBEDDINGS.values():
        if (choice.model_id, choice.fingerprint) == (model_id, fingerprint):
            return choice
    return None


def embedder_for(model_id: str, fingerprint: str) -> Embedder | None:
    """The loaded embedder with this identity, or None when this polyroute has no such one."""
    choice = find_choice(model_id, fingerprint)
    return get_embedder(choice.name) if choice else None


def default_embedder() -> Embedder:
    """The process-wide default routing embedder (:mod:`polyroute.embeddings.registry`).

    That is ``minilm-lexical`` (the static MiniLM vector with hashed n-grams), not the full
    encoder: the encoder is ~130× slower for no better routing (docs/routers.md, "Embeddings").
    """
    from polyroute.embeddings.registry import get_embedder

    return get_embedder()
