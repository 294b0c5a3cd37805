"""Soak: the gateway under steady load for minutes, its memory sampled; does it leak?

Starts the echo upstream and ``polyroute serve`` (SQLite store) on 127.0.0.1, each in its own
process, then keeps ``--concurrency`` requests in flight for ``--minutes``, alternating
non-streamed and streamed windows of ``--sample-s`` seconds. After each window it prints the
gateway's RSS and the window's requests per second and errors. The first ``--warmup``
windows are warm-up (pools, caches, the store's first pages); the growth reported is the
last sample's RSS over the first sample after the warm-up. The goal: at most 10%.

    python benchmarks/soak.py                          # 10 min at 64 in flight (by hand)
    python benchmarks/soak.py --minutes 2 --sample-s 20   # shortened, ~2.5 min

Exits 1 when a request failed or the growth is over ``--max-growth``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import Server, free_port, new_event_loop, python_throughput
from gateway_overhead import _UPSTREAM, polyroute_cmd, recorded_rows

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--sample-s", type=float, default=60.0, help="seconds between RSS samples")
    p.add_argument("--warmup", type=int, default=1, help="samples that are warm-up")
    p.add_argument("--max-growth", type=float, default=0.10)
    return p.parse_args(argv)


@dataclass
class Soaked:
    """The RSS samples of one soak (MB, one per window) and what the load got."""

    samples: list[float]
    warmup: int
    ok: int
    errors: int
    traces: int | None

    @property
    def base(self) -> float:
        return self.samples[self.warmup]

    @property
    def last(self) -> float:
        return self.samples[-1]

    @property
    def peak(self) -> float:
        return max(self.samples[self.warmup :])

    @property
    def growth(self) -> float:
        """The last sample over the first after the warm-up, minus 1."""
        return (self.last - self.base) / self.base


def soak(args: argparse.Namespace) -> Soaked:
    """Run the soak, printing a line per window; the samples and totals."""
    windows = max(args.warmup + 2, round(args.minutes * 60 / args.sample_s))
    workdir = Path(tempfile.mkdtemp(prefix="polyroute-soak-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    db = workdir / "polyroute.db"
    up_port, gw_port = free_port(), free_port()
    config = workdir / "polyroute.yaml"
    config.write_text(
        f"providers:\n  up: {{api: openai, base_url: 'http://127.0.0.1:{up_port}/v1'}}\n"
        f"models:\n  - {{name: echo, provider: up}}\n"
        f"store: {{database_url: 'sqlite:///{db}'}}\n"
    )
    upstream = Server(
        "upstream", [sys.executable, "-c", _UPSTREAM, str(up_port)], up_port,
        cwd=ROOT, logdir=workdir, env=env,
    )  # fmt: skip
    gateway = Server(
        "polyroute", polyroute_cmd(config, gw_port, "auto", "auto"), gw_port,
        cwd=ROOT, logdir=workdir, env=env,
    )  # fmt: skip
    samples: list[float] = []
    total_ok = total_errors = 0
    with contextlib.ExitStack() as stack:
        stack.callback(upstream.stop)
        stack.callback(gateway.stop)
        upstream.start("/v1/models", 15)
        gateway.start("/health/live", 60)
        assert gateway.pid is not None
        print(f"soak: {windows} windows of {args.sample_s:g} s at {args.concurrency} in flight; "
              f"logs in {workdir}", flush=True)  # fmt: skip
        print(f"{'window':>6} {'kind':>6} {'req/s':>8} {'errors':>7} {'RSS MB':>8}", flush=True)
        print(f"{'start':>6} {'':>6} {'':>8} {'':>7} {rss_mb(gateway.pid):8.1f}", flush=True)
        loop = new_event_loop()
        try:
            for i in range(windows):
                stream = i % 2 == 1
                run = loop.run_until_complete(
                    python_throughput(
                        gw_port,
                        stream=stream,
                        concurrency=args.concurrency,
                        duration_s=args.sample_s,
                        max_requests=10**9,
                        headers={},
                        warmup_s=0.5,
                    )
                )
                rss = rss_mb(gateway.pid)
                samples.append(rss)
                total_ok += run.ok
                total_errors += run.errors
                kind = "stream" if stream else "json"
                mark = " (warm-up)" if i < args.warmup else ""
                print(f"{i + 1:>6} {kind:>6} {run.rps:8.0f} {run.errors:7d} {rss:8.1f}{mark}"
                      + (f" {run.kinds}" if run.errors else ""), flush=True)  # fmt: skip
        finally:
            loop.close()
        gateway.stop()
    return Soaked(samples, args.warmup, total_ok, total_errors, recorded_rows(db))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    r = soak(args)
    print(
        f"\nRSS after warm-up {r.base:.1f} MB -> end {r.last:.1f} MB (peak {r.peak:.1f}): "
        f"growth {r.growth * 100:+.1f}% (limit {args.max_growth * 100:.0f}%)\n"
        f"requests answered {r.ok}, errors {r.errors}, traces stored {r.traces}\n"
        f"command: python {shlex.join(['benchmarks/soak.py', *(argv or sys.argv[1:])])}"
    )
    return 1 if r.errors or r.growth > args.max_growth else 0


if __name__ == "__main__":
    t0 = time.monotonic()
    code = main()
    print(f"took {time.monotonic() - t0:.0f} s")
    raise SystemExit(code)
