"""What the Hugging Face Hub says about one file: its commit, sha256, size and licence.

``huggingface_hub`` is imported lazily (it is optional) and asked only for metadata; the
bytes come through :mod:`polyroute.weights.fetch`, so a Hub download resumes and is
verified exactly like a URL. For a file stored with Git LFS (every GGUF) the Hub's ETag is
the file's sha256: that is the hash recorded and checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from polyroute.errors import WeightsError
from polyroute.weights.refs import Ref

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class HubFile:
    commit: str
    sha256: str | None
    size: int | None
    licence: str
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)


def sha256_from_etag(etag: str | None) -> str | None:
    """The sha256 an LFS file's ETag carries (quoted or weak), else None."""
    if not etag:
        return None
    value = etag.removeprefix("W/").strip('"').lower()
    return value if _HEX64.match(value) else None


def hub_file(ref: Ref) -> HubFile:
    """Ask the Hub for ``ref``'s metadata at its revision (network; runs in a thread)."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]
    except ImportError:
        raise WeightsError(
            "hf:// references need huggingface_hub: pip install 'polyroute[local]'"
        ) from None
    endpoint = huggingface_hub.constants.ENDPOINT
    try:
        meta = huggingface_hub.get_hf_file_metadata(ref.hub_url(endpoint), timeout=20)
    except Exception as e:  # the client's own error tree: not found, gated, offline
        raise WeightsError(f"{ref.text}: the Hub did not describe the file: {e}") from None
    if not meta.commit_hash:
        raise WeightsError(f"{ref.text}: the Hub gave no commit for revision {ref.revision!r}")
    licence = "unknown"
    try:
        info = huggingface_hub.model_info(ref.location, revision=meta.commit_hash, timeout=20)
        card = info.card_data
        if card is not None and card.get("license"):
            licence = str(card.get("license"))
    except Exception:  # the licence is provenance, not a reason to refuse the file
        pass
    return HubFile(
        commit=meta.commit_hash,
        sha256=sha256_from_etag(meta.etag),
        size=meta.size,
        licence=licence,
        endpoint=endpoint,
        headers=dict(build_hf_headers()),
    )
