"""Traces that survive: a real gateway under load, killed, restarted, its traces counted.

All on 127.0.0.1, each server in its own process (session): the echo upstream and
``polyroute serve``. For each database (SQLite, and PostgreSQL when its binaries are
installed) and each way to die it:

1. serves ``--concurrency`` requests in flight for ``--duration`` seconds, keeping the
   trace id of every answer the load client received (a 200 with its ``id``);
2. kills the gateway's whole process group, writer process included: ``SIGKILL`` (nothing
   runs after it: what survives is the journal) or ``SIGTERM`` (a graceful stop, as
   systemd sends it to every process of the service);
3. starts the gateway again on the same database and journal, waits until the journal is
   empty, stops it, and counts: an answered request whose trace is not in the database is
   **lost** (the target: 0). A request in flight at the kill has no answer; if it has a
   trace anyway, that is counted as *unanswered, recorded*.

Then the writer's own speed: ``--rows`` traces like the load's (request body, decision,
one attempt) journaled at once, and the real writer process timed until it has stored
them all, on each database; against the gateway's request rate measured in step 1 at
``--concurrency`` in flight (the target: at least 5x).

    python benchmarks/trace_durability.py                  # ~2 min
    python benchmarks/trace_durability.py --quick          # ~40 s, SQLite only
    python benchmarks/trace_durability.py --database postgresql

Exits 1 when any trace was lost, 2 with ``--strict`` when the writer is under 5x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _load import Client, Server, chat_body, free_port, new_event_loop  # noqa: E402
from gateway_overhead import _UPSTREAM, polyroute_cmd  # noqa: E402

from polyroute.routing.base import Decision  # noqa: E402
from polyroute.store import Recorder, RequestRecord, Store  # noqa: E402
from polyroute.store.journal import Journal  # noqa: E402
from polyroute.store.recorder import AttemptRecord, trace_line  # noqa: E402

TARGET_RATIO = 5.0


class Load:
    """Requests back to back on ``concurrency`` connections, keeping the answers' trace ids."""

    def __init__(self, port: int, concurrency: int) -> None:
        self.port, self.concurrency = port, concurrency
        self.answered: set[str] = set()
        self.errors = 0
        self.seconds = 0.0
        self._stop = False
        self._tasks: list[asyncio.Future[None]] = []

    @property
    def rps(self) -> float:
        return len(self.answered) / self.seconds if self.seconds else 0.0

    async def _worker(self) -> None:
        client = Client("127.0.0.1", self.port, "/v1/chat/completions", chat_body(False), {})
        try:
            while not self._stop:
                try:
                    answer = await client.send(timeout_s=10)
                except Exception:  # refused, reset, timed out: the gateway is down
                    self.errors += 1
                    await asyncio.sleep(0.05)
                    continue
                if answer.status == 200:
                    self.answered.add(orjson.loads(answer.body)["id"])
                else:
                    self.errors += 1
        finally:
            client.close()

    async def run_for(self, seconds: float) -> None:
        """Start the workers and return after ``seconds``, leaving them at work."""
        self._tasks = [asyncio.ensure_future(self._worker()) for _ in range(self.concurrency)]
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        self.seconds = time.perf_counter() - start

    async def stop(self) -> None:
        self._stop = True
        await asyncio.wait(self._tasks, timeout=15)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def health(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        return dict(orjson.loads(r.read()))


def stored_ids(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(sa.text("SELECT id FROM requests")))
    finally:
        engine.dispose()


def gateway(config: Path, port: int, workdir: Path, env: dict[str, str]) -> Server:
    return Server(
        "polyroute", polyroute_cmd(config, port, "auto", "auto"), port,
        cwd=ROOT, logdir=workdir, env=env,
    )  # fmt: skip


def crash_run(
    database_url: str, sig: signal.Signals, args: argparse.Namespace, up_port: int
) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix=f"polyroute-durability-{sig.name.lower()}-"))
    journal = workdir / "journal"
    config = workdir / "polyroute.yaml"
    config.write_text(
        f"providers:\n  up: {{api: openai, base_url: 'http://127.0.0.1:{up_port}/v1'}}\n"
        f"models:\n  - {{name: echo, provider: up}}\n"
        f"store: {{database_url: '{database_url}', journal_dir: '{journal}'}}\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = free_port()
    first = gateway(config, port, workdir, env).start("/health/live", 60)
    loop = new_event_loop()
    result = Load(port, args.concurrency)
    try:
        loop.run_until_complete(result.run_for(args.duration))
        assert first.proc is not None
        # Under load: the gateway and its writer, as a service manager signals a service.
        os.killpg(first.proc.pid, sig)
        t = time.monotonic()
        while first.proc.poll() is None and time.monotonic() - t < 120:
            loop.run_until_complete(asyncio.sleep(0.01))  # the load keeps going meanwhile
        exit_s = time.monotonic() - t
        loop.run_until_complete(result.stop())
    finally:
        loop.close()
    with contextlib.suppress(ProcessLookupError):  # a writer left behind, if any
        os.killpg(first.proc.pid, signal.SIGKILL)
    left_bytes = sum(p.stat().st_size for p in journal.glob("*.jsonl"))
    before = len(stored_ids(database_url))
    second = gateway(config, port, workdir, env).start("/health/live", 60)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            recorder = health(port)["recorder"]
            assert isinstance(recorder, dict)
            replayed = recorder["replayed"]
            if recorder["journal_bytes"] == 0:
                break
            time.sleep(0.2)
    finally:
        second.stop()
    stored = stored_ids(database_url)
    lost = result.answered - stored
    return {
        "signal": sig.name,
        "rps": result.rps,
        "answered": len(result.answered),
        "stored_before_restart": before,
        "journal_bytes_left": left_bytes,
        "replayed": replayed,
        "stored": len(stored),
        "lost": len(lost),
        "unanswered_recorded": len(stored - result.answered),
        "exit_s": exit_s,
        "load_errors": result.errors,
    }


def sample_record(i: int) -> RequestRecord:
    now = datetime.now(UTC)
    record = RequestRecord(
        id=f"bench-{i:09d}", created_at=now, requested_model="auto", stream=False,
        model="echo", provider="up", upstream_model="echo", router="knn", input_tokens=12,
        output_tokens=9, latency_ms=1.23, cost_usd=1.1e-6, cost_status="known",
        response_text="polyroute benchmark says hello",
        request_body=orjson.loads(chat_body(False)),
        decision=Decision(model="echo", router="knn", scores={"echo": 0.8, "other": 0.6},
                          costs={"echo": 1e-6, "other": 3e-6}, reason="best score"),
    )  # fmt: skip
    record.attempts = [
        AttemptRecord(n=0, started_at=now, model="echo", provider="up", upstream_model="echo",
                      input_tokens=12, output_tokens=9, latency_ms=1.1)
    ]  # fmt: skip
    return record


def writer_rate(database_url: str, rows: int) -> float:
    """Rows a second the real writer process stores from a full journal."""
    workdir = Path(tempfile.mkdtemp(prefix="polyroute-writer-"))
    store = Store(database_url)
    store.migrate()
    journal = Journal(workdir)
    for i in range(rows):
        journal.append(trace_line(sample_record(i)))
    journal.close()

    async def run() -> float:
        recorder = Recorder(store, journal_dir=workdir)
        t = time.perf_counter()
        await recorder.start()
        await recorder.flush(timeout=600)
        elapsed = time.perf_counter() - t
        replayed = recorder.stats().replayed
        await recorder.aclose()
        assert replayed == rows, f"writer stored {replayed} of {rows}"
        return elapsed

    elapsed = asyncio.run(run())
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM requests")) == rows
    store.dispose()
    return rows / elapsed


def start_databases(which: str, stack: contextlib.ExitStack, workdir: Path) -> dict[str, str]:
    """``sqlite`` and/or ``postgresql`` (a throwaway server, stopped by ``stack``) → URL."""
    from tests.support.postgres import PostgresServer, _bin_dir

    databases: dict[str, str] = {}
    if which in ("sqlite", "both"):
        databases["sqlite"] = f"sqlite:///{workdir / 'polyroute.db'}"
    if which in ("postgresql", "both"):
        bin_dir = _bin_dir()
        if bin_dir is None:
            print("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): SQLite only")
        else:
            server = PostgresServer(bin_dir)
            admin = server.start()
            stack.callback(server.stop)
            databases["postgresql"] = admin.replace("postgresql://", "postgresql+psycopg://", 1)
    return databases


def fresh_database(name: str, url: str, tag: str, workdir: Path) -> str:
    """A new, empty database named ``tag`` beside ``url`` (a file for SQLite)."""
    if name == "sqlite":
        return f"sqlite:///{workdir / f'{tag}.db'}"
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{tag}"')
    return url.rsplit("/", 1)[0] + f"/{tag}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load before a kill")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rows", type=int, default=50_000, help="traces for the writer's speed")
    p.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--quick", action="store_true", help="5 s of load, 20,000 rows, SQLite")
    p.add_argument("--strict", action="store_true", help="exit 2 when the writer is under 5x")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rows, args.database = 5.0, 20_000, "sqlite"
    stack = contextlib.ExitStack()
    workdir = Path(tempfile.mkdtemp(prefix="polyroute-durability-"))
    databases = start_databases(args.database, stack, workdir)

    def fresh(name: str, url: str, tag: str) -> str:
        return fresh_database(name, url, tag, workdir)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    up_port = free_port()
    upstream = Server("upstream", [sys.executable, "-c", _UPSTREAM, str(up_port)], up_port,
                      cwd=ROOT, logdir=workdir, env=env)  # fmt: skip
    started = time.monotonic()
    crashes: list[tuple[str, dict[str, object]]] = []
    speeds: dict[str, float] = {}
    with stack:
        upstream.start("/v1/models", 15)
        stack.callback(upstream.stop)
        for name, url in databases.items():
            # Each store is migrated by the gateway; the PostgreSQL ones need a database first.
            for sig in (signal.SIGKILL, signal.SIGTERM):
                tag = f"crash_{sig.name.lower()}"
                crashes.append((name, crash_run(fresh(name, url, tag), sig, args, up_port)))
                print(f"  {name} {sig.name}: {crashes[-1][1]}", flush=True)
            speeds[name] = writer_rate(fresh(name, url, "writer_speed"), args.rows)
            print(f"  {name} writer: {speeds[name]:.0f} rows/s", flush=True)

    print(f"\nTrace durability: a real gateway at {args.concurrency} in flight for "
          f"{args.duration:g} s, then its process group killed; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; {time.monotonic() - started:.0f} s")  # fmt: skip
    print(f"  {'database':<11}{'signal':<9}{'req/s':>7}{'answered':>10}{'in db at kill':>15}"
          f"{'journal left':>14}{'replayed':>10}{'lost':>6}{'unanswered, kept':>18}"
          f"{'exit s':>8}")  # fmt: skip
    lost = 0
    for name, c in crashes:
        lost += int(c["lost"])  # type: ignore[call-overload]
        print(f"  {name:<11}{c['signal']!s:<9}{c['rps']:>7.0f}{c['answered']:>10}"
              f"{c['stored_before_restart']:>15}{c['journal_bytes_left']:>12} B"
              f"{c['replayed']:>10}{c['lost']:>6}{c['unanswered_recorded']:>18}"
              f"{c['exit_s']:>8.1f}")  # fmt: skip
    rates = [float(c["rps"]) for n, c in crashes]  # type: ignore[arg-type]
    gateway_rps = max(rates) if rates else 0.0
    print(f"\nWriter speed: {args.rows} traces journaled, stored by the writer process "
          f"(against the gateway's best rate above, {gateway_rps:.0f} req/s)")  # fmt: skip
    slow = False
    for name, rate in speeds.items():
        ratio = rate / gateway_rps if gateway_rps else float("nan")
        slow |= ratio < TARGET_RATIO
        mark = "PASS" if ratio >= TARGET_RATIO else "MISS"
        print(f"  [{mark}] {name:<11}{rate:>9.0f} rows/s  = {ratio:.1f}x the gateway (target 5x)")
    print(f"\n  [{'PASS' if lost == 0 else 'FAIL'}] traces lost: {lost}")
    print(f"\nReproduce: python benchmarks/trace_durability.py {shlex.join(argv)}".rstrip())
    if lost:
        return 1
    return 2 if slow and args.strict else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
