"""Downloading one file over HTTP(S), resumable, hashed as it arrives.

Bytes go to a ``.part`` file that survives a cut: the next attempt (in the same pull, or the
next ``polyroute weights pull``) asks for the rest with ``Range: bytes=N-``, and starts over
only when the server ignores the range (200) or the file on disk is longer than the server's.
Nothing here trusts a finished download: the caller compares the returned sha256 with the
expected one and refuses the file otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from polyroute.errors import WeightsError

log = logging.getLogger(__name__)

#: ``progress(bytes_so_far, total_or_None)``, called as blocks arrive.
Progress = Callable[[int, int | None], None]
_BLOCK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True, slots=True)
class Downloaded:
    sha256: str
    size: int
    #: How many times the transfer was resumed after a cut (0: one pass).
    resumes: int


def _hash_existing(path: Path) -> tuple[hashlib._Hash, int]:
    h = hashlib.sha256()
    size = 0
    if path.exists():
        with path.open("rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
                size += len(block)
    return h, size


def _total_from(response: httpx.Response, start: int) -> int | None:
    if response.status_code == 206:
        m = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if m is None or int(m.group(1)) != start:
            raise WeightsError(
                f"{response.url} answered a range that does not start at byte {start} "
                f"(Content-Range: {response.headers.get('content-range')!r})"
            )
        return None if m.group(3) == "*" else int(m.group(3))
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def download(
    url: str,
    partial: Path,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    retries: int = 3,
    progress: Progress | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Downloaded:
    """Fetch ``url`` into ``partial``, resuming from what it holds; return its hash and size.

    A connection cut mid-file is retried from where it stopped, ``retries`` times; after
    that the error says to run the pull again (the ``.part`` file is kept for it).
    """
    partial.parent.mkdir(parents=True, exist_ok=True)
    h, have = _hash_existing(partial)
    resumes = 0
    with httpx.Client(
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        follow_redirects=True,
        transport=transport,
        headers=dict(headers or {}),
    ) as client:
        for attempt in range(retries + 1):
            # Identity encoding: byte ranges and the hash are of the file itself.
            request_headers = {"accept-encoding": "identity"}
            if have:
                request_headers["range"] = f"bytes={have}-"
            try:
                with client.stream("GET", url, headers=request_headers) as response:
                    if response.status_code == 416 and have:
                        # Asked past the end: what is on disk is already whole (or too long).
                        m = re.match(r"^bytes \*/(\d+)$", response.headers.get("content-range", ""))
                        if m is not None and int(m.group(1)) == have:
                            return Downloaded(h.hexdigest(), have, resumes)
                        partial.unlink(missing_ok=True)
                        h, have = hashlib.sha256(), 0
                        continue
                    if response.status_code not in (200, 206):
                        raise WeightsError(
                            f"{url} answered {response.status_code} "
                            f"{response.reason_phrase}; nothing was downloaded"
                        )
                    if response.status_code == 200 and have:
                        log.info("%s ignored the range request: downloading from the start", url)
                        h, have = hashlib.sha256(), 0
                        partial.unlink(missing_ok=True)
                    total = _total_from(response, have)
                    with partial.open("ab") as out:
                        # Raw, as it arrives: a buffered block would be lost with a cut.
                        for block in response.iter_raw():
                            out.write(block)
                            h.update(block)
                            have += len(block)
                            if progress is not None:
                                progress(have, total)
                    if total is not None and have < total:
                        raise httpx.RemoteProtocolError(f"got {have} of {total} bytes")
                    return Downloaded(h.hexdigest(), have, resumes)
            except httpx.TransportError as e:
                if attempt == retries:
                    raise WeightsError(
                        f"{url}: the transfer was cut after {have} bytes ({e.__class__.__name__}: "
                        f"{e}); {partial} is kept: run the same pull again to resume"
                    ) from None
                resumes += 1
                log.warning("%s: cut after %d bytes (%s); resuming", url, have, e)
    raise WeightsError(f"{url}: the server's ranges never matched the file; try again")
