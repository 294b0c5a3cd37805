"""The model store: one content-addressed cache of weight files, shared by every engine.

Layout under the store's directory (``$POLYROUTE_WEIGHTS_DIR``, else
``$XDG_CACHE_HOME/polyroute/weights``)::

    blobs/<sha256>          the files, named by their content
    meta/<sha256>.json      provenance: source, hash, size, licence, revision, last use
    refs/<key>.json         a reference already fetched → its sha256 (so a pull is a hit)
    partial/<key>.part      an interrupted download, resumed by the next pull
    locks/                  flock(2) files: one per reference being pulled, one per file in use

Why flock: it works across processes (two ``polyroute`` commands, or the gateway and the
CLI) and is released by the kernel when a process dies, so a crash never leaves a stale
lock. A pull holds the reference's lock exclusively (a concurrent pull of the same file
waits, then finds it cached: one download); a user (an engine, the embedded engine) holds
the file's lock shared, and eviction skips any file whose lock it cannot take exclusively.

Files that live elsewhere and are only *recorded* here (the SmolLM2 GGUF inside its PyPI
package) have ``location`` set: they count in listings but not against the size limit, and
eviction never deletes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from polyroute.errors import WeightsError
from polyroute.weights.fetch import Progress, download
from polyroute.weights.refs import Ref, check_sha256, parse_ref

_BLOCK = 1 << 20
UNKNOWN_LICENCE = "unknown"


@dataclass(frozen=True, slots=True)
class Entry:
    """One file the store holds, with where it came from."""

    sha256: str
    size: int
    source: str
    filename: str
    licence: str = UNKNOWN_LICENCE
    #: hf: the commit the revision resolved to.
    revision: str | None = None
    fetched_at: float = 0.0
    last_used: float = 0.0
    #: Set for a file recorded in place (outside ``blobs/``); None for a file the store owns.
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_dir() -> Path:
    if env := os.environ.get("POLYROUTE_WEIGHTS_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polyroute" / "weights"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def refused(what: str, expected: str, actual: str) -> WeightsError:
    """The error for a file whose hash is not the one expected: both hashes, and what to do."""
    return WeightsError(
        f"{what}: sha256 {actual}, expected {expected}; the file is corrupt, truncated or "
        "not the one named, and was refused"
    )


class Lease:
    """A shared lock on one stored file: while held, eviction leaves the file alone."""

    def __init__(self, entry: Entry, path: Path, lock: IO[bytes]) -> None:
        self.entry = entry
        self.path = path
        self._lock: IO[bytes] | None = lock

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class WeightsStore:
    """A directory of verified weight files with their provenance (see the module docstring).

    Blocking (file I/O, downloads): the gateway calls it from a thread, never on the hot path.
    """

    def __init__(self, root: Path | None = None, *, max_bytes: int | None = None) -> None:
        self.root = (root or default_dir()).expanduser()
        self.max_bytes = max_bytes
        for sub in ("blobs", "meta", "refs", "partial", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # -- paths and records ------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def path_of(self, entry: Entry) -> Path:
        return Path(entry.location) if entry.location else self.blob_path(entry.sha256)

    def _meta_path(self, sha256: str) -> Path:
        return self.root / "meta" / f"{sha256}.json"

    def get(self, sha256: str) -> Entry | None:
        try:
            data = json.loads(self._meta_path(sha256).read_text())
            return Entry(**data)
        except (OSError, ValueError, TypeError):
            return None

    def entries(self) -> list[Entry]:
        """Every recorded file, most recently used first."""
        found = (self.get(p.stem) for p in (self.root / "meta").glob("*.json"))
        return sorted((e for e in found if e is not None), key=lambda e: -e.last_used)

    def _save(self, entry: Entry) -> Entry:
        _write_json(self._meta_path(entry.sha256), entry.to_json())
        return entry

    def touch(self, entry: Entry) -> Entry:
        return self._save(replace(entry, last_used=time.time()))

    def record(
        self,
        path: Path,
        *,
        sha256: str,
        source: str,
        licence: str = UNKNOWN_LICENCE,
        filename: str | None = None,
        revision: str | None = None,
    ) -> Entry:
        """Record provenance for a verified file that stays where it is (or is a blob)."""
        inside = path.resolve() == self.blob_path(sha256).resolve()
        now = time.time()
        old = self.get(sha256)
        entry = Entry(
            sha256=sha256,
            size=path.stat().st_size,
            source=source,
            filename=filename or path.name,
            licence=licence,
            revision=revision,
            fetched_at=old.fetched_at if old else now,
            last_used=now,
            location=None if inside else str(path.resolve()),
        )
        ref = None
        with contextlib.suppress(WeightsError):
            ref = parse_ref(source)
        self._remember(ref, entry)
        return self._save(entry)

    def _remember(self, ref: Ref | None, entry: Entry) -> None:
        if ref is not None:
            _write_json(
                self.root / "refs" / f"{ref.key}.json", {"ref": ref.text, "sha256": entry.sha256}
            )

    def _cached(self, ref: Ref, sha256: str | None) -> Entry | None:
        try:
            known = json.loads((self.root / "refs" / f"{ref.key}.json").read_text())["sha256"]
        except (OSError, ValueError, KeyError):
            known = None
        for digest in (sha256, known):
            if digest is None:
                continue
            entry = self.get(digest)
            if entry is not None and self.path_of(entry).is_file():
                if sha256 is not None and entry.sha256 != sha256:
                    raise refused(ref.text, sha256, entry.sha256)
                return entry
        return None

    def find(self, source: str, sha256: str | None = None) -> Entry | None:
        """The stored file ``source`` names, if it has been fetched (no network)."""
        try:
            return self._cached(parse_ref(source), check_sha256(sha256) if sha256 else None)
        except WeightsError:
            return None

    # -- locks --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        with (self.root / "locks" / f"{name}.lock").open("ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # waits for a concurrent pull of the same file
            yield

    def lease(self, entry: Entry) -> Lease:
        """Mark ``entry`` in use until the lease is closed (the file must exist)."""
        lock = (self.root / "locks" / f"{entry.sha256}.use.lock").open("ab")
        fcntl.flock(lock, fcntl.LOCK_SH)
        path = self.path_of(entry)
        if not path.is_file():
            lock.close()
            raise WeightsError(f"{entry.source}: {path} is gone; pull it again")
        return Lease(self.touch(entry), path, lock)

    def in_use(self, entry: Entry) -> bool:
        with (self.root / "locks" / f"{entry.sha256}.use.lock").open("ab") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False

    # -- pulling ------------------------------------------------------------------------------

    def pull(
        self,
        source: str,
        *,
        sha256: str | None = None,
        licence: str | None = None,
        progress: Progress | None = None,
        retries: int = 3,
        timeout_s: float = 60.0,
    ) -> Entry:
        """The stored file ``source`` names: from the cache, or fetched and verified now."""
        ref = parse_ref(source)
        expected = check_sha256(sha256) if sha256 else None
        with self._exclusive(f"pull-{ref.key}"):
            hit = self._cached(ref, expected)
            if hit is not None:
                return self.touch(hit)
            if ref.kind == "url":
                if expected is None:
                    raise WeightsError(
                        f"{ref.text}: a URL download needs --sha256 (the file's published "
                        "hash): without it a corrupt or substituted file could not be told apart"
                    )
                entry = self._fetch_url(ref, ref.location, expected, {}, licence, progress,
                                        retries, timeout_s)  # fmt: skip
            elif ref.kind == "hf":
                entry = self._fetch_hf(ref, expected, licence, progress, retries, timeout_s)
            elif ref.kind == "path":
                entry = self._copy_local(ref, expected, licence)
            else:
                entry = self._builtin(ref, expected)
        self.evict(keep={entry.sha256})
        return entry

    def _commit(self, ref: Ref, part: Path, digest: str, entry: Entry) -> Entry:
        if not self.blob_path(digest).exists():
            part.replace(self.blob_path(digest))
        else:
            part.unlink(missing_ok=True)
        self._remember(ref, entry)
        return self._save(entry)

    def _fetch_url(
        self,
        ref: Ref,
        url: str,
        expected: str | None,
        headers: dict[str, str],
        licence: str | None,
        progress: Progress | None,
        retries: int,
        timeout_s: float,
        revision: str | None = None,
    ) -> Entry:
        part = self.root / "partial" / f"{ref.key}.part"
        got = download(url, part, headers=headers, retries=retries, progress=progress,
                       timeout_s=timeout_s)  # fmt: skip
        if expected is not None and got.sha256 != expected:
            part.unlink()  # resuming onto wrong bytes could never succeed
            raise refused(ref.text, expected, got.sha256)
        now = time.time()
        entry = Entry(
            sha256=got.sha256,
            size=got.size,
            source=ref.text,
            filename=ref.filename_hint,
            licence=licence or UNKNOWN_LICENCE,
            revision=revision,
            fetched_at=now,
            last_used=now,
        )
        return self._commit(ref, part, got.sha256, entry)

    def _fetch_hf(
        self,
        ref: Ref,
        expected: str | None,
        licence: str | None,
        progress: Progress | None,
        retries: int,
        timeout_s: float,
    ) -> Entry:
        from polyroute.weights.hub import hub_file

        meta = hub_file(ref)
        if expected is not None and meta.sha256 is not None and meta.sha256 != expected:
            raise WeightsError(
                f"{ref.text}: the Hub says sha256 {meta.sha256}, but --sha256 is {expected}"
            )
        want = expected or meta.sha256
        hit = self.get(want) if want is not None else None
        if hit is not None and self.path_of(hit).is_file():
            self._remember(ref, hit)
            return self.touch(hit)
        pinned = Ref("hf", ref.text, ref.location, ref.filename, meta.commit)
        return self._fetch_url(ref, pinned.hub_url(meta.endpoint), want, meta.headers,
                               licence or meta.licence, progress, retries, timeout_s,
                               revision=meta.commit)  # fmt: skip

    def _copy_local(self, ref: Ref, expected: str | None, licence: str | None) -> Entry:
        src = Path(ref.location)
        if not src.is_file():
            raise WeightsError(f"{src} does not exist or is not a file")
        part = self.root / "partial" / f"{ref.key}.part"
        h = hashlib.sha256()
        with src.open("rb") as f, part.open("wb") as out:
            while block := f.read(_BLOCK):
                h.update(block)
                out.write(block)
        digest = h.hexdigest()
        if expected is not None and digest != expected:
            part.unlink()
            raise refused(ref.text, expected, digest)
        now = time.time()
        entry = Entry(digest, part.stat().st_size, ref.text, src.name,
                      licence or UNKNOWN_LICENCE, None, now, now)  # fmt: skip
        return self._commit(ref, part, digest, entry)

    def _builtin(self, ref: Ref, expected: str | None) -> Entry:
        from polyroute.providers.local_models import BUILTIN_MODELS, builtin_model_path

        model = BUILTIN_MODELS[ref.location]
        if expected is not None and expected != model.sha256:
            raise refused(ref.text, expected, model.sha256)
        builtin_model_path(ref.location, store=self)  # verifies, and records it here
        entry = self.get(model.sha256)
        if entry is None:
            raise WeightsError(f"{ref.text}: verified but could not be recorded in {self.root}")
        return entry

    # -- upkeep -------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        return sum(e.size for e in self.entries() if e.location is None)

    def evict(self, keep: set[str] | None = None) -> list[Entry]:
        """Delete least recently used files until the store fits ``max_bytes``.

        Never deletes a file in ``keep``, a file in use (leased), or one recorded in place.
        """
        if self.max_bytes is None:
            return []
        entries = [e for e in self.entries() if e.location is None]
        used = sum(e.size for e in entries)
        gone: list[Entry] = []
        for entry in sorted(entries, key=lambda e: e.last_used):
            if used <= self.max_bytes:
                break
            if entry.sha256 in (keep or set()) or self.in_use(entry):
                continue
            self._delete(entry)
            used -= entry.size
            gone.append(entry)
        return gone

    def _delete(self, entry: Entry) -> None:
        if entry.location is None:
            self.blob_path(entry.sha256).unlink(missing_ok=True)
        self.blob_path(entry.sha256).with_name(f"{entry.sha256}.verified").unlink(missing_ok=True)
        self._meta_path(entry.sha256).unlink(missing_ok=True)
        for ref_file in (self.root / "refs").glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(ref_file.read_text())["sha256"] == entry.sha256:
                    ref_file.unlink()

    def remove(self, what: str) -> list[Entry]:
        """Forget the files a sha256 (or a unique prefix of one) or a source names.

        A file in use is refused; a file recorded in place is forgotten, never deleted.
        """
        needle = what.strip()
        matches = [
            e
            for e in self.entries()
            if e.source == needle
            or (len(needle) >= 8 and e.sha256.startswith(needle.lower()))
            or (parse_ref_safe(needle) == e.source)
        ]
        for entry in matches:
            if self.in_use(entry):
                raise WeightsError(f"{entry.source} ({entry.sha256[:12]}) is in use by an engine")
        for entry in matches:
            self._delete(entry)
        return matches

    def verify(self) -> list[tuple[Entry, str | None]]:
        """Hash every file again: ``(entry, None)`` when it matches, else what is wrong."""
        results: list[tuple[Entry, str | None]] = []
        for entry in self.entries():
            path = self.path_of(entry)
            if not path.is_file():
                results.append((entry, f"{path} is missing"))
                continue
            h = hashlib.sha256()
            with path.open("rb") as f:
                while block := f.read(_BLOCK):
                    h.update(block)
            actual = h.hexdigest()
            problem = None if actual == entry.sha256 else refused(str(path), entry.sha256, actual)
            results.append((entry, problem.message if problem else None))
        return results

    def clean_partials(self) -> int:
        """Delete interrupted downloads; returns how many bytes were freed."""
        freed = 0
        for part in (self.root / "partial").glob("*.part"):
            freed += part.stat().st_size
            part.unlink()
        return freed


def parse_ref_safe(text: str) -> str | None:
    """The canonical spelling of ``text`` as a reference, or None if it is not one."""
    try:
        return parse_ref(text).text
    except WeightsError:
        return None


_default: WeightsStore | None = None


def default_store() -> WeightsStore:
    """The process's store: the one the gateway configured, else the default directory."""
    # Built afresh each time unless configured: the environment may change (tests do).
    return _default if _default is not None else WeightsStore()


def use_default_store(store: WeightsStore | None) -> None:
    """Make ``store`` the process's store (the gateway does, from its ``weights:`` section)."""
    global _default
    _default = store


def copy_into(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` where the file system allows it, else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
