"""How long the model catalog takes to load: the figure behind "loads in well under a second".

Each run is a fresh Python process that imports ``polyroute.catalog``, loads the bundled
catalog (read, parse, validate) and resolves one name (which builds the name index). The
baseline, measured in the same run, is a plain ``json.loads`` of the same file: what
validation adds on top of parsing. It also times a cached ``load_catalog()`` call, which
is what every caller after the first pays.

Usage::

    python benchmarks/catalog_load.py              # 5 fresh processes
    python benchmarks/catalog_load.py --runs 20 --strict   # exit 2 if the median passes 1 s
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 1.0

_CHILD = """
import json, time
t0 = time.perf_counter()
import polyroute.catalog as c
t1 = time.perf_counter()
cat = c.bundled_catalog()
t2 = time.perf_counter()
c.resolve(cat, "gpt-4o-2024-08-06")
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "index": t3 - t2,
                  "models": len(cat.models),
                  "endpoints": sum(len(m.endpoints) for m in cat.models)}))
"""


def fresh_process() -> dict[str, float]:
    env_path = str(ROOT / "src")
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r})\n{_CHILD}"],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def in_process() -> tuple[float, float, int]:
    """(json.loads of the bundled file, a cached load_catalog() call, file size)."""
    sys.path.insert(0, str(ROOT / "src"))
    from polyroute.catalog import load_catalog
    from polyroute.catalog.load import BUNDLED

    data = BUNDLED.read_bytes()
    t0 = time.perf_counter()
    json.loads(data)
    parse = time.perf_counter() - t0
    load_catalog()
    n = 1000
    t0 = time.perf_counter()
    for _ in range(n):
        load_catalog()
    cached = (time.perf_counter() - t0) / n
    return parse, cached, len(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes to time")
    parser.add_argument("--strict", action="store_true", help=f"exit 2 if median > {TARGET_S} s")
    args = parser.parse_args()

    runs = [fresh_process() for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in ("import", "load", "index")}
    total = statistics.median(r["import"] + r["load"] + r["index"] for r in runs)
    parse, cached, size = in_process()

    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    load1 = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load1:.1f} (others' work slows this)")
    print(
        f"catalog: {int(runs[0]['models'])} models, {int(runs[0]['endpoints'])} endpoints, "
        f"{size:,} bytes of JSON"
    )
    print(f"fresh process, median of {args.runs}:")
    print(f"  import polyroute.catalog     {med['import'] * 1000:8.1f} ms")
    print(f"  load bundled catalog         {med['load'] * 1000:8.1f} ms  (read + parse + validate)")
    print(f"  first resolve (index build)  {med['index'] * 1000:8.1f} ms")
    target = f"(target < {TARGET_S * 1000:.0f} ms)"
    print(f"  total                        {total * 1000:8.1f} ms  {target}")
    print(f"baseline, same run: json.loads of the file {parse * 1000:.1f} ms")
    print(f"cached load_catalog() call: {cached * 1e6:.2f} µs")
    if args.strict and total > TARGET_S:
        print("FAIL: over target")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
