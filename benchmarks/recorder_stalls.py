"""What the recorder costs the event loop: loop stalls while traces are recorded at a steady rate.

One process, one event loop, as in the gateway: records like the gateway's (request body,
one attempt) are submitted at ``--rate`` a second for ``--seconds``, while a ticker that
wants to wake every millisecond measures how late it wakes. A late wake is time the loop
could not serve a request: at concurrency 1 it lands on that request's latency, which is
what ``benchmarks/gateway_overhead.py``'s p99 shows.

``--baseline-src DIR`` runs the same in a child process on another checkout's ``src`` (e.g.
``git worktree add /tmp/base main``), so that the old recorder (a thread that encodes and
writes batches in the gateway's process) and the new one (a journal line per record, a
writer process) are measured side by side in one run.

    python benchmarks/recorder_stalls.py
    python benchmarks/recorder_stalls.py --baseline-src /tmp/base/src --rate 2000

Prints the ticker's lateness (p50, p99, p99.9, max) and how many wakes were over 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


async def measure(rate: float, seconds: float) -> dict[str, Any]:
    from polyroute.store import Recorder, RequestRecord, Store
    from polyroute.store.recorder import AttemptRecord

    workdir = Path(tempfile.mkdtemp(prefix="polyroute-stalls-"))
    store = Store(f"sqlite:///{workdir / 'polyroute.db'}")
    store.migrate()
    options: dict[str, Any] = {"flush_interval_s": 0.5}
    if "journal_dir" in inspect.signature(Recorder).parameters:
        options["journal_dir"] = workdir / "journal"
    recorder = Recorder(store, **options)
    started = recorder.start()
    if inspect.isawaitable(started):
        await started
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": "polyroute benchmark says hello " * 4}],
        "max_tokens": 16,
        "temperature": 0.2,
    }
    lateness: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append((time.perf_counter() - t - 0.001) * 1000)

    async def traffic() -> int:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            due = int((time.perf_counter() - start) * rate)
            while n < due:
                now = datetime.now(UTC)
                record = RequestRecord(
                    id=f"s{n}", created_at=now, requested_model="echo", stream=False,
                    model="echo", provider="up", upstream_model="echo", input_tokens=12,
                    output_tokens=9, latency_ms=0.7, cost_status="unknown",
                    request_body=dict(body), response_text="polyroute benchmark says hello",
                )  # fmt: skip
                record.attempts = [
                    AttemptRecord(n=0, started_at=now, model="echo", provider="up", latency_ms=0.6)
                ]
                recorder.submit(record)
                n += 1
            await asyncio.sleep(0.002)
        return n

    cpu0 = time.process_time()  # this process only: a writer process is not counted
    tick = asyncio.ensure_future(ticker())
    submitted = await traffic()
    stop = True
    await tick
    cpu = time.process_time() - cpu0
    t = time.perf_counter()
    await recorder.aclose()
    close_s = time.perf_counter() - t
    stored = len(store.recent_requests(limit=10**9))
    store.dispose()
    lateness.sort()
    return {
        "submitted": submitted,
        "stored": stored,
        "close_s": close_s,
        "ticks": len(lateness),
        "p50": _percentile(lateness, 50),
        "p99": _percentile(lateness, 99),
        "p999": _percentile(lateness, 99.9),
        "max": lateness[-1] if lateness else 0.0,
        "over_2ms": sum(1 for x in lateness if x > 2.0),
        "gc_gen2": gc.get_stats()[2]["collections"],
        "cpu_s": cpu,
    }


def child(src: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, __file__, "--json", "--rate", str(args.rate), "--seconds",
           str(args.seconds)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=1500.0, help="records a second [1500]")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--baseline-src", help="another checkout's src/, measured the same way")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.json:
        result = asyncio.run(measure(args.rate, args.seconds))
        idle = asyncio.run(measure(0.0, args.seconds))  # the ticker and the traffic loop alone
        result["cpu_us"] = (result["cpu_s"] - idle["cpu_s"]) / max(1, result["submitted"]) * 1e6
        print(json.dumps(result))
        return 0
    runs = {}
    if args.baseline_src:
        runs["baseline"] = child(args.baseline_src, args)
    runs["this checkout"] = child(str(ROOT / "src"), args)
    load = os.getloadavg()[0]
    print(f"\nEvent-loop lateness while recording {args.rate:g} traces/s for {args.seconds:g} s")
    print(f"  (a 1 ms ticker; {os.cpu_count()} CPUs, load average {load:.1f})")
    print(f"  {'recorder':<16}{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>10}{'max ms':>8}"
          f"{'wakes >2ms':>12}{'cpu us/trace':>14}{'stored':>14}{'close s':>9}")  # fmt: skip
    for name, r in runs.items():
        stored = f"{r['stored']}/{r['submitted']}"
        late = f"{r['p50']:>8.2f}{r['p99']:>8.2f}{r['p999']:>10.2f}{r['max']:>8.1f}"
        print(f"  {name:<16}{late}{r['over_2ms']:>12}{r['cpu_us']:>14.1f}{stored:>14}"
              f"{r['close_s']:>9.2f}")  # fmt: skip
    print("  cpu us/trace: the process's own CPU (GIL time included) per trace, over an idle run's")
    print(f"\nReproduce: python benchmarks/recorder_stalls.py {' '.join(argv)}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
