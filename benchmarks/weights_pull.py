"""What the model store costs over a plain download, and what a resume saves.

Serves one random file from a real HTTP server on 127.0.0.1 (tests/support/file_server.py)
and, interleaved round by round, measures:

- baseline: httpx streaming the file to disk (no hash, no store);
- store: ``WeightsStore.pull`` (hashed as it arrives, verified, committed by content hash);
- resume: a pull whose first connection is cut at half the file, resumed with a Range
  request (bytes on the wire: the whole file plus nothing re-sent).

Prints the median MB/s of each and the command that reproduces it.

    python benchmarks/weights_pull.py [--mb 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.support.file_server import running_file_server  # noqa: E402

from polyroute.weights.store import WeightsStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="file size in MB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("polyroute.weights").setLevel(logging.ERROR)  # the cuts are on purpose
    data = os.urandom(args.mb * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    mb = len(data) / 1e6
    rates: dict[str, list[float]] = {"baseline": [], "store": [], "resume": []}
    with running_file_server() as server, tempfile.TemporaryDirectory() as tmp:
        server.files["/m.gguf"] = data
        url = f"{server.url}/m.gguf"
        for r in range(args.rounds):
            out = Path(tmp) / f"plain-{r}"
            t = time.perf_counter()
            with httpx.stream("GET", url, timeout=60) as response, out.open("wb") as f:
                for block in response.iter_raw():
                    f.write(block)
            rates["baseline"].append(mb / (time.perf_counter() - t))
            out.unlink()

            store = WeightsStore(Path(tmp) / f"store-{r}")
            t = time.perf_counter()
            store.pull(url, sha256=sha)
            rates["store"].append(mb / (time.perf_counter() - t))

            store = WeightsStore(Path(tmp) / f"resume-{r}")
            server.cut_after["/m.gguf"] = len(data) // 2
            before = len(server.requests)
            t = time.perf_counter()
            store.pull(url, sha256=sha)
            rates["resume"].append(mb / (time.perf_counter() - t))
            assert server.requests[before + 1][1] == f"bytes={len(data) // 2}-"
    base = statistics.median(rates["baseline"])
    print(f"weights pull of a {mb:.0f} MB file over 127.0.0.1, median of {args.rounds} rounds")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"  {name:9s} {med:8.0f} MB/s  ({med / base:.2f}x baseline; "
              f"range {min(values):.0f}-{max(values):.0f})")  # fmt: skip
    print(f"reproduce: python benchmarks/weights_pull.py --mb {args.mb} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
