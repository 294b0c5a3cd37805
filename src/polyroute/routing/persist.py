"""A trained router on disk: a directory anyone can inspect, loaded without pickle.

::

    DIR/manifest.json   what it is: kind, models, hyperparameters, the embedding model and its
                        weights' sha256, prices, the knob and its calibration, a training
                        summary, and the sha256 of arrays.npz
    DIR/arrays.npz      the learned arrays ("model/...") and the calibration set
                        ("calibration/..."), read with allow_pickle=False
    DIR/anchors.jsonl   optional: the anchor pool, training prompts ranked by how much a new
                        model's answers to them tell (``polyroute router anchors``); not read
                        when serving

Loading checks the format version, the kind (in the routers registry), that this polyroute
has the embedding the router learned from (and uses that one: :mod:`polyroute.embeddings.registry`),
and the arrays' hash; each failure is a :class:`RouterFileError` saying what is wrong and what
to do.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyroute import __version__
from polyroute.embeddings.base import Embedder
from polyroute.embeddings.registry import EMBEDDINGS, find_choice, get_embedder
from polyroute.errors import ConfigError
from polyroute.routing.knob import Calibration, Knob
from polyroute.routing.routers.learned import CalibrationSet, LearnedRouter

FORMAT = "polyroute-router"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
ANCHORS = "anchors.jsonl"


class RouterFileError(ConfigError):
    """A directory that is not a usable trained router."""


def save_router(
    router: LearnedRouter,
    path: str | Path,
    *,
    training: Mapping[str, Any] | None = None,
    anchors: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``router`` to the directory ``path`` (created; a router already there is replaced),
    with its anchor pool (:mod:`polyroute.routing_eval.anchors`) when given."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RouterFileError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise RouterFileError(
            f"{path} is a non-empty directory that holds no router; choose another --out"
        )
    if not router.models:
        raise ValueError("the router is not trained")
    path.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": v for k, v in router.state().items()}
    if router.calibration_set is not None:
        cs = router.calibration_set
        arrays |= {
            "calibration/predicted": cs.predicted.astype(np.float32),
            "calibration/costs": cs.costs,
            "calibration/scores": cs.scores.astype(np.float32),
        }
    tmp = path / f".{ARRAYS}.tmp"
    with tmp.open("wb") as f:
        # Compressed: mf's wide term is mostly zeros (buckets no training prompt hit).
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # stubs miss **arrays
    tmp.replace(path / ARRAYS)
    anchor_info = None
    if anchors is not None:
        tmp = path / f".{ANCHORS}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            for row in anchors:
                f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        tmp.replace(path / ANCHORS)
        anchor_info = {"file": ANCHORS, "sha256": _sha256(path / ANCHORS), "count": len(anchors)}
    elif (path / ANCHORS).is_file():
        (path / ANCHORS).unlink()  # a stale pool must not pass for this router's
    embedder = router.embedder
    fp = embedder.fingerprint
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": router.kind,
        "name": router.name,
        "models": router.models,
        "params": router.params(),
        "embedding": {
            "name": choice.name if (choice := find_choice(embedder.model_id, fp)) else None,
            "model": embedder.model_id,
            "sha256": embedder.fingerprint,
            "dim": embedder.dim,
        },
        "prices": {m: {"input": p[0], "output": p[1]} for m, p in router.prices.items()},
        "output_tokens": router.output_tokens,
        "knob": router.knob.to_dict(),
        "lambda": router.lam,
        "calibration": router.calibration.to_dict() if router.calibration else None,
        "priors": dict(router.priors),
        "training": dict(training or {}),
        "arrays": {"file": ARRAYS, "sha256": _sha256(path / ARRAYS)},
        "anchors": anchor_info,
        "polyroute_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False)
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path / MANIFEST)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the router in ``path``, checked for format and version."""
    path = resolve_router_path(path)
    file = path / MANIFEST
    if not path.is_dir():
        raise RouterFileError(f"{path}: no such directory (train one with `polyroute train`)")
    if not file.is_file():
        raise RouterFileError(
            f"{path} is not a trained router: it has no {MANIFEST} "
            "(train one with `polyroute train --data DATA.jsonl --out DIR`)"
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RouterFileError(f"{file}: cannot read it as JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RouterFileError(f"{file} is not a polyroute router manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise RouterFileError(
            f"{file}: format version {version!r}; this polyroute reads version "
            f"{FORMAT_VERSION} (retrain the router, or use the polyroute that wrote it)"
        )
    return manifest


#: ``builtin:NAME`` names a router shipped inside the package (``routing/builtin/NAME``).
BUILTIN_PREFIX = "builtin:"


def builtin_routers() -> list[str]:
    """The names of the routers that ship with polyroute."""
    root = Path(__file__).parent / "builtin"
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())


def resolve_router_path(path: str | Path) -> Path:
    """A router directory, with ``builtin:NAME`` resolved to the copy in the package."""
    text = str(path)
    if not text.startswith(BUILTIN_PREFIX):
        return Path(path).expanduser()
    name = text.removeprefix(BUILTIN_PREFIX)
    if name not in builtin_routers():
        raise RouterFileError(
            f"no built-in router {name!r}; built-in ones: {', '.join(builtin_routers())}"
        )
    return Path(__file__).parent / "builtin" / name


def load_router(
    path: str | Path, *, name: str | None = None, embedder: Embedder | None = None
) -> LearnedRouter:
    """The learned router saved in ``path`` (or ``builtin:NAME``); ``embedder`` defaults to
    the one its manifest names (:mod:`polyroute.embeddings.registry`)."""
    from polyroute.routing.registry import ROUTERS

    path = resolve_router_path(path)
    manifest = read_manifest(path)
    try:
        kind = manifest["kind"]
        cls = ROUTERS.get(kind)
        if not (isinstance(cls, type) and issubclass(cls, LearnedRouter)):
            raise RouterFileError(f"{path}: {kind!r} is not a learned router kind")
        embedder = _embedder_for(path, manifest["embedding"], embedder)
        router = cls(name or manifest.get("name") or kind, embedder=embedder, **manifest["params"])
        arrays = _read_arrays(path, manifest["arrays"]["sha256"])
        router.models = [str(m) for m in manifest["models"]]
        router.load_state(
            {k.removeprefix("model/"): v for k, v in arrays.items() if k.startswith("model/")}
        )
        router.prices = {
            m: (float(p["input"]), float(p["output"])) for m, p in manifest["prices"].items()
        }
        router.output_tokens = int(manifest["output_tokens"])
        router.priors = {str(m): str(how) for m, how in manifest.get("priors", {}).items()}
        router.knob = Knob.from_dict(manifest["knob"])
        router.lam = float(manifest["lambda"])
        if manifest.get("calibration"):
            router.calibration = Calibration.from_dict(manifest["calibration"])
        if "calibration/predicted" in arrays:
            router.calibration_set = CalibrationSet(
                predicted=arrays["calibration/predicted"].astype(np.float64),
                costs=arrays["calibration/costs"].astype(np.float64),
                scores=arrays["calibration/scores"].astype(np.float64),
            )
    except KeyError as e:
        raise RouterFileError(f"{path}/{MANIFEST}: missing or unknown {e.args[0]}") from None
    except (TypeError, ValueError) as e:
        raise RouterFileError(f"{path}: the router's files are inconsistent ({e})") from None
    router.manifest = manifest
    return router


def read_anchor_pool(path: str | Path) -> list[dict[str, Any]]:
    """The anchor pool saved with the router in ``path``, best first (checked against the
    manifest's sha256); a router saved without one is a :class:`RouterFileError` naming the fix."""
    path = resolve_router_path(path)
    info = read_manifest(path).get("anchors")
    file = path / ANCHORS
    if not info or not file.is_file():
        raise RouterFileError(
            f"{path} holds no anchor pool (routers trained before anchors existed, or saved "
            "without one); retrain it with `polyroute train --data DATA.jsonl --out DIR`"
        )
    if _sha256(file) != info.get("sha256"):
        raise RouterFileError(f"{file} does not match the manifest's sha256: damaged; retrain")
    rows = []
    for lineno, line in enumerate(file.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RouterFileError(f"{file}:{lineno}: not valid JSON ({e.msg})") from None
            rows.append(row)
    return rows


def _embedder_for(path: Path, spec: Mapping[str, Any], embedder: Embedder | None) -> Embedder:
    """The embedder the router learned from: ``embedder`` if given (it must be that one), else
    the known embedding the manifest names; anything else means the router must be retrained."""
    model, sha = spec["model"], spec["sha256"]
    if embedder is not None and (embedder.model_id, embedder.fingerprint) == (model, sha):
        return embedder
    choice = find_choice(model, sha) if embedder is None else None
    if choice is not None:
        return get_embedder(choice.name)
    have = (
        f"this embedder is {embedder.model_id} ({embedder.fingerprint[:12]}…)"
        if embedder is not None
        else "this polyroute embeds with "
        + ", ".join(f"{c.name} = {c.model_id} ({c.fingerprint[:12]}…)" for c in EMBEDDINGS.values())
    )
    raise RouterFileError(
        f"{path} was trained on embeddings of {model} (sha256 {sha[:12]}…) but {have}; "
        "retrain the router (`polyroute train --data DATA.jsonl --out DIR`)"
    )


def _read_arrays(path: Path, sha256: str) -> dict[str, np.ndarray[Any, Any]]:
    file = path / ARRAYS
    if not file.is_file():
        raise RouterFileError(f"{path}: {ARRAYS} is missing")
    if _sha256(file) != sha256:
        raise RouterFileError(f"{file} does not match the manifest's sha256: damaged; retrain")
    try:
        with np.load(file, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise RouterFileError(f"{file}: cannot read ({e})") from None


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
