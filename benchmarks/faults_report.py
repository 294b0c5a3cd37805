"""Every figure issue 11's "Done when" asks for, from one run: what polyroute promises under faults.

It runs the other benchmarks' own measurements, one after the other, each printing its
details as it goes, then prints the figures together:

1. lost traces after ``kill -9`` under load, and after ``SIGTERM``
   (``trace_durability.crash_run``: a real gateway at ``--concurrency`` in flight, its process
   group killed, restarted, every answered request's trace looked up; SQLite, and
   PostgreSQL when its binaries are installed);
2. the 16 fault scenarios' outcomes (``fault_scenarios.run_scenarios``: the real gateway and
   the real ``openai`` client against the fault-injecting upstream), as a table;
3. p50/p99 added at concurrency 1 and requests per second at 64 in flight, polyroute against
   LiteLLM's proxy, same upstream, same run (``gateway_overhead.measure``; LiteLLM from
   ``.bench-venv-litellm``, see ``gateway_overhead.py --setup-litellm``);
4. the gateway's RSS over a soak (``soak.soak``): 2 minutes by default, ``--full-soak`` for
   the issue's 10 minutes with a sample each minute.

    python benchmarks/faults_report.py                 # ~12 min on 2 cores
    python benchmarks/faults_report.py --full-soak     # ~20 min
    python benchmarks/faults_report.py --quick         # ~5 min, SQLite only, shorter phases

Exits 1 when a trace was lost, a scenario gave an unexpected or truncated outcome, a request
failed, or the soak's growth is over 10%.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fault_scenarios
import gateway_overhead
import soak
import trace_durability
from _load import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
MAX_GROWTH = 0.10


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="SQLite only, shorter phases")
    p.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--crash-duration", type=float, default=10.0, help="seconds of load per kill")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--no-litellm", action="store_true", help="polyroute alone (no comparison)")
    p.add_argument("--soak-minutes", type=float, default=2.0)
    p.add_argument("--soak-sample-s", type=float, default=20.0)
    p.add_argument(
        "--full-soak", action="store_true", help="the issue's soak: 10 minutes, sampled each minute"
    )
    args = p.parse_args(argv)
    if args.full_soak:
        args.soak_minutes, args.soak_sample_s = 10.0, 60.0
    if args.quick:
        args.database, args.crash_duration = "sqlite", 5.0
        if not args.full_soak:
            args.soak_minutes, args.soak_sample_s = 1.0, 15.0
    return args


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * max(0, 80 - len(title))}", flush=True)


def durability(args: argparse.Namespace) -> list[tuple[str, dict[str, object]]]:
    """Each database, killed with SIGKILL and with SIGTERM under load: crash_run's results."""
    crash_args = argparse.Namespace(duration=args.crash_duration, concurrency=args.concurrency)
    workdir = Path(tempfile.mkdtemp(prefix="polyroute-report-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    up_port = free_port()
    upstream = Server(
        "upstream", [sys.executable, "-c", gateway_overhead._UPSTREAM, str(up_port)], up_port,
        cwd=ROOT, logdir=workdir, env=env,
    )  # fmt: skip
    results: list[tuple[str, dict[str, object]]] = []
    with contextlib.ExitStack() as stack:
        databases = trace_durability.start_databases(args.database, stack, workdir)
        upstream.start("/v1/models", 15)
        stack.callback(upstream.stop)
        for name, url in databases.items():
            for sig in (signal.SIGKILL, signal.SIGTERM):
                tag = f"crash_{sig.name.lower()}"
                fresh = trace_durability.fresh_database(name, url, tag, workdir)
                results.append((name, trace_durability.crash_run(fresh, sig, crash_args, up_port)))
                c = results[-1][1]
                print(f"  {name} {sig.name}: {c['answered']} answered at {c['rps']:.0f} req/s, "
                      f"{c['stored_before_restart']} in the database at the kill, "
                      f"{c['replayed']} replayed from the journal, {c['lost']} lost, "
                      f"exit {c['exit_s']:.1f} s", flush=True)  # fmt: skip
    return results


def overhead(args: argparse.Namespace) -> gateway_overhead.Measured:
    flags = ["--concurrency", str(args.concurrency)]
    if args.quick:
        flags += ["--requests", "1000", "--rounds", "1", "--duration", "4"]
    if args.no_litellm:
        flags.append("--no-litellm")
    o_args = gateway_overhead.parse_args(flags)
    measured = gateway_overhead.measure(o_args)
    gateway_overhead.report(
        o_args, measured.lat, measured.runs, measured.recorded, measured.elapsed, flags
    )
    return measured


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, gateway_overhead._exit_on_sigterm)
    started = time.monotonic()

    section("1. traces after a crash under load (benchmarks/trace_durability.py)")
    crashes = durability(args)

    section("2. the fault scenarios (benchmarks/fault_scenarios.py)")
    rows, unexpected = fault_scenarios.run_scenarios(echo=False)

    section("3. overhead against LiteLLM's proxy (benchmarks/gateway_overhead.py)")
    measured = overhead(args)

    section("4. soak (benchmarks/soak.py)")
    soaked = soak.soak(
        soak.parse_args(
            ["--minutes", str(args.soak_minutes), "--sample-s", str(args.soak_sample_s),
             "--concurrency", str(args.concurrency)]
        )
    )  # fmt: skip

    # ------------------------------------------------------------------------------ figures
    section("polyroute under faults: the figures")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average now {load}; "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip
    failed = False

    print("\nLost traces (answered requests whose trace is not in the database after restart)")
    for name, c in crashes:
        lost = int(str(c["lost"]))
        failed |= lost != 0
        print(f"  [{'PASS' if lost == 0 else 'FAIL'}] {c['signal']!s:<8} {name:<11} "
              f"{lost} lost of {c['answered']} answered at {args.concurrency} in flight "
              f"({args.crash_duration:g} s of load; {c['replayed']} replayed from the "
              f"journal)")  # fmt: skip

    print(f"\nFault scenarios ({len(rows)}; `whole`: the complete answer, stitched where rescued)")
    print("  " + fault_scenarios.HEADER)
    for row in rows:
        print("  " + fault_scenarios.format_row(row))
    failed |= unexpected != 0
    print(f"  [{'PASS' if unexpected == 0 else 'FAIL'}] unexpected or truncated outcomes: "
          f"{unexpected}")  # fmt: skip

    print("\nOverhead (one gateway worker each, same echo upstream, same run)")
    gateways = ["polyroute", *(["litellm"] if "litellm" in measured.lat else [])]
    for name in gateways:
        print(f"  {name:<10} added at concurrency 1: p50 {measured.added_ms(name, 50):7.3f} ms, "
              f"p99 {measured.added_ms(name, 99):7.3f} ms")  # fmt: skip
    for name in gateways:
        rps = measured.rps(name, args.concurrency)
        shown = f"{rps:.0f}" if rps is not None else "–"
        print(f"  {name:<10} requests/s at {args.concurrency} in flight: {shown}")
    for name in gateways:
        cpu = measured.cpu_ms(name, args.concurrency)
        shown = f"{cpu:.2f}" if cpu is not None else "–"
        print(f"  {name:<10} CPU ms per request at {args.concurrency} in flight: {shown} "
              f"(steadier than req/s on a shared machine)")  # fmt: skip
    ratio = gateway_overhead.paired_ratio(measured.runs, False, args.concurrency)
    if ratio is not None:
        print(f"  polyroute / LiteLLM at {args.concurrency} in flight: {ratio:.1f}x "
              f"(median of the per-round ratios)")  # fmt: skip
    else:
        print("  LiteLLM not measured (python benchmarks/gateway_overhead.py --setup-litellm)")
    errors = sum(t.errors for ts in measured.runs.values() for t in ts)
    errors += sum(x.errors for by in measured.lat.values() for x in by.values())
    failed |= errors != 0
    print(f"  [{'PASS' if errors == 0 else 'FAIL'}] failed requests: {errors}")

    print(f"\nSoak ({args.soak_minutes:g} min at {args.concurrency} in flight, RSS each "
          f"{args.soak_sample_s:g} s)")  # fmt: skip
    print("  RSS MB: " + " ".join(f"{x:.1f}" for x in soaked.samples))
    ok = soaked.growth <= MAX_GROWTH and soaked.errors == 0
    failed |= not ok
    print(f"  [{'PASS' if ok else 'FAIL'}] after warm-up {soaked.base:.1f} -> end "
          f"{soaked.last:.1f} MB (peak {soaked.peak:.1f}): growth "
          f"{soaked.growth * 100:+.1f}% (limit {MAX_GROWTH * 100:.0f}%); {soaked.ok} answered, "
          f"{soaked.errors} errors")  # fmt: skip

    print(f"\nReproduce: {shlex.join(['python', 'benchmarks/faults_report.py', *argv])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
