"""Throughput of ``polyroute serve --workers N``: 1 worker against N, in the same run.

Runs, all on 127.0.0.1 and each in its own process: the echo upstream (answers at once), and
two gateways on the same config (each with its own SQLite file), one with ``--workers 1``
and one with ``--workers N``. Both are up for the whole run; the load (a lean asyncio client
in this process, ``concurrency`` connections sending back to back, counted over a steady
window) goes to one at a time, in rounds that alternate them, so both see the same machine.
Non-streamed chat completions; any answer that is not a 200 carrying the echoed text is an
error. It prints, per gateway, the median requests per second over the rounds, p50/p99,
the gateway's CPU per request and the cores it, the upstream, the load and the machine used,
then the median of the per-round ratios N workers / 1 worker, and the command.

    python benchmarks/workers.py                  # 2 workers, 64 in flight, 3 rounds of 8 s
    python benchmarks/workers.py --workers 4 --rounds 5 --duration 10

Throughput can only scale with cores the gateway gets: on a 2-core machine the load
generator and the upstream take much of them (their cores are printed). Exits 1 when any
request failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import (
    Server,
    Throughput,
    free_port,
    machine_cpu_seconds,
    new_event_loop,
    own_cpu_seconds,
    python_throughput,
)

ROOT = Path(__file__).resolve().parent.parent


def _config(path: Path, up_port: int, db: Path) -> Path:
    path.write_text(
        f"store: {{database_url: 'sqlite:///{db}'}}\n"
        "auth: none\n"
        f"providers: {{up: {{api: openai, base_url: 'http://127.0.0.1:{up_port}/v1'}}}}\n"
        "models: [{name: echo, provider: up, input_price: 1.0, output_price: 2.0}]\n"
    )
    return path


def _run(server: Server, upstream: Server, args: argparse.Namespace) -> Throughput:
    marks: dict[str, tuple[float | None, float | None, float, float | None]] = {}

    def mark(when: str) -> None:
        marks[when] = (
            server.cpu_seconds(),
            upstream.cpu_seconds(),
            own_cpu_seconds(),
            machine_cpu_seconds(),
        )

    loop = new_event_loop()
    try:
        result = loop.run_until_complete(
            python_throughput(
                server.port,
                stream=False,
                concurrency=args.concurrency,
                duration_s=args.duration,
                max_requests=10**9,
                headers={},
                on_window=mark,
            )
        )
    finally:
        loop.close()
    start, end = marks["start"], marks["end"]
    spent = [
        (e - s) if e is not None and s is not None else None
        for s, e in zip(start, end, strict=True)
    ]
    result.server_cpu_s, result.upstream_cpu_s, result.load_cpu_s, result.machine_cpu_s = spent
    return result


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="workers of the second gateway")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    work = Path(tempfile.mkdtemp(prefix="polyroute-bench-workers-"))
    up_port = free_port()
    upstream = Server(
        "upstream",
        [sys.executable, "-c",
         f"from tests.support.echo_upstream import serve_forever; serve_forever({up_port})"],
        up_port, cwd=ROOT, logdir=work, env=env,
    )  # fmt: skip
    exe = Path(sys.executable).with_name("polyroute")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "polyroute.cli.main"]
    gateways: dict[int, Server] = {}
    for n in (1, args.workers):
        port = free_port()
        config = _config(work / f"w{n}.yaml", up_port, work / f"w{n}.db")
        gateways[n] = Server(
            f"workers-{n}",
            [*head, "serve", "--config", str(config), "--port", str(port),
             "--workers", str(n), "--log-level", "warning"],
            port, cwd=ROOT, logdir=work, env=env,
        )  # fmt: skip
    runs: dict[int, list[Throughput]] = {n: [] for n in gateways}
    try:
        upstream.start("/v1/models", 30)
        for server in gateways.values():
            server.start("/health/live", 180)
        for r in range(args.rounds):
            order = list(gateways) if r % 2 == 0 else list(reversed(gateways))
            for n in order:
                result = _run(gateways[n], upstream, args)
                runs[n].append(result)
                print(f"round {r + 1}, {n} worker(s): {result.rps:,.0f} req/s"
                      f" ({result.errors} errors)", flush=True)  # fmt: skip
    finally:
        for server in [*gateways.values(), upstream]:
            server.stop()

    print(f"\nconcurrency {args.concurrency}, non-streamed, {args.rounds} rounds of "
          f"{args.duration:g} s, {os.cpu_count()} CPUs on this machine")  # fmt: skip
    print(f"{'workers':>8} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms/req':>10} "
          f"{'gw cores':>8} {'up cores':>8} {'load cores':>10} {'machine':>8}")  # fmt: skip
    failed = 0
    for n, results in runs.items():
        best = sorted(results, key=lambda t: t.rps)[len(results) // 2]  # the median round
        failed += sum(t.errors for t in results)
        print(f"{n:>8} {best.rps:>9,.0f} {_fmt(best.p50_ms, 1):>7} {_fmt(best.p99_ms, 1):>7} "
              f"{_fmt(best.cpu_ms_per_request, 3):>10} {_fmt(best.cores(best.server_cpu_s)):>8} "
              f"{_fmt(best.cores(best.upstream_cpu_s)):>8} "
              f"{_fmt(best.cores(best.load_cpu_s)):>10} "
              f"{_fmt(best.cores(best.machine_cpu_s)):>8}")  # fmt: skip
    n = args.workers
    ratios = [b.rps / a.rps for a, b in zip(runs[1], runs[n], strict=True) if a.rps > 0]
    if ratios:
        each = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"\n{n} workers / 1 worker: {statistics.median(ratios):.2f}x "
              f"(median of {len(ratios)} rounds: {each})")  # fmt: skip
    if failed:
        print(f"{failed} requests failed", file=sys.stderr)
    print("\ncommand: python " + shlex.join(["benchmarks/workers.py", *sys.argv[1:]]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
