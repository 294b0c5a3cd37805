"""Throughput through Ray Serve (two gateway replicas) against plain ``polyroute serve``.

Runs, all on 127.0.0.1, in one run: the echo upstream (answers at once), ``polyroute serve``
(one process), and a local Ray cluster (``ray start --head``, ``--num-cpus`` as given) with
``polyroute ray serve --replicas 2`` behind Ray's HTTP proxy; both gateways use the same
config (SQLite store, traces journaled, no auth). The load comes from this process (the lean
client of ``_load.py``): 64 connections sending back to back, counted over a steady window,
in rounds that alternate the two targets so that both see the same machine. It prints, per
target, the median requests per second over the rounds, p50/p99 latency, errors, and the CPU
that the target's processes used per request (for Ray: the whole cluster: proxy, replicas,
controller and Ray's own daemons, whose idle use is printed first).

    python benchmarks/ray_serve.py                 # 3 rounds of 10 s each, ~2 min
    python benchmarks/ray_serve.py --quick         # 1 round of 5 s

On a machine with 2 cores shared by the load, the upstream and the gateways, Ray's proxy is
one more Python hop per request on the same cores: expect it to cost throughput there, not
add it; replicas pay off with cores (or machines) to put them on. Exits 1 when any request
failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _load import Server, Throughput, free_port, new_event_loop, python_throughput
from gateway_overhead import _UPSTREAM, polyroute_cmd
from tests.support.ray_cluster import replica_pids, running_ray_cluster

ROOT = Path(__file__).resolve().parent.parent


def _round(port: int, concurrency: int, seconds: float, cpu: Server | None) -> Throughput:
    marks: dict[str, float] = {}

    def on_window(edge: str) -> None:
        if cpu is not None:
            marks[edge] = cpu.cpu_seconds() or 0.0

    loop = new_event_loop()
    try:
        result = loop.run_until_complete(
            python_throughput(
                port,
                stream=False,
                concurrency=concurrency,
                duration_s=seconds,
                max_requests=1_000_000,
                headers={},
                on_window=on_window,
            )
        )
    finally:
        loop.close()
    if "start" in marks and "end" in marks:
        result.server_cpu_s = marks["end"] - marks["start"]
    return result


def _summary(name: str, rounds: list[Throughput]) -> str:
    rps = statistics.median(r.rps for r in rounds)
    p50 = statistics.median(r.p50_ms or 0 for r in rounds)
    p99 = statistics.median(r.p99_ms or 0 for r in rounds)
    cpu = [r.cpu_ms_per_request for r in rounds if r.cpu_ms_per_request is not None]
    errors = sum(r.errors for r in rounds)
    cpu_text = f"{statistics.median(cpu):.2f} ms CPU/request" if cpu else "CPU not read"
    return (
        f"{name:<28} {rps:8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
        f"{cpu_text}   errors {errors}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="each round's window")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--num-cpus", type=int, default=2, help="the Ray cluster's CPUs")
    parser.add_argument("--quick", action="store_true", help="1 round of 5 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 5.0
    workdir = Path(tempfile.mkdtemp(prefix="polyroute-bench-ray-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    up_port, gw_port, ray_port = free_port(), free_port(), free_port()
    config = workdir / "polyroute.yaml"
    config.write_text(
        f"providers:\n  up: {{kind: openai, base_url: 'http://127.0.0.1:{up_port}/v1'}}\n"
        f"models:\n  - {{name: echo, provider: up}}\n"
        f"store: {{database_url: 'sqlite:///{workdir / 'polyroute.db'}',"
        f" journal_dir: '{workdir / 'journal'}'}}\n"
    )
    upstream = Server(
        "upstream", [sys.executable, "-c", _UPSTREAM, str(up_port)], up_port,
        cwd=ROOT, logdir=workdir, env=env,
    )  # fmt: skip
    plain = Server(
        "polyroute", polyroute_cmd(config, gw_port, "auto", "auto"), gw_port,
        cwd=ROOT, logdir=workdir, env=env,
    )  # fmt: skip
    results: dict[str, list[Throughput]] = {"polyroute serve": [], "ray serve (2 replicas)": []}
    failed = 0
    try:
        upstream.start("/v1/models", 30)
        plain.start("/health/live", 60)
        with running_ray_cluster(num_cpus=args.num_cpus, timeout_s=120) as cluster:
            started = time.monotonic()
            deploy = [sys.executable, "-c", "from polyroute.cli.main import main; main()",
                      "ray", "serve", "--config", str(config), "--replicas", "2",
                      "--address", cluster.address, "--host", "127.0.0.1",
                      "--port", str(ray_port), "--detach"]  # fmt: skip
            done = subprocess.run(deploy, env=cluster.env, capture_output=True, text=True,
                                  timeout=300)  # fmt: skip
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                return 1
            print(f"Ray Serve up in {time.monotonic() - started:.0f} s "
                  f"(replicas {replica_pids()})", flush=True)  # fmt: skip
            # The whole cluster's CPU: the `ray start --block` process and all below it.
            ray_cpu = Server("ray", [], ray_port, cwd=ROOT, logdir=workdir, env=env)
            ray_cpu.proc = cluster.process
            before = ray_cpu.cpu_seconds() or 0.0
            time.sleep(5)
            idle_cores = ((ray_cpu.cpu_seconds() or 0.0) - before) / 5
            print(f"idle Ray cluster (no requests): {idle_cores:.2f} cores", flush=True)
            for i in range(args.rounds):
                for name, port, cpu in (
                    ("polyroute serve", gw_port, plain),
                    ("ray serve (2 replicas)", ray_port, ray_cpu),
                ):
                    r = _round(port, args.concurrency, args.seconds, cpu)
                    results[name].append(r)
                    failed += r.errors
                    print(f"round {i + 1} {name}: {r.rps:.0f} req/s, errors {r.kinds or 0}",
                          flush=True)  # fmt: skip
            ray_cpu.proc = None  # the cluster's fixture stops it
    finally:
        plain.stop()
        upstream.stop()
    print(f"\n{args.concurrency} in flight, {args.rounds} rounds of {args.seconds:g} s, "
          f"{os.cpu_count()} cores (load, upstream and gateways share them):")  # fmt: skip
    for name, rounds in results.items():
        print(_summary(name, rounds))
    plain_rps = statistics.median(r.rps for r in results["polyroute serve"])
    ray_rps = statistics.median(r.rps for r in results["ray serve (2 replicas)"])
    if plain_rps:
        print(f"ray serve / polyroute serve: {ray_rps / plain_rps:.2f}")
    print(
        "reproduce: "
        + shlex.join([sys.executable, "benchmarks/ray_serve.py", *(argv or sys.argv[1:])])
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
