"""What keys, budgets and rate limits cost a request, in process, without HTTP around it.

``gateway_overhead.py --auth`` measures the same thing through real servers, but on a shared
machine its wall-clock and even its CPU figures move by more than the effect. This drives
the gateway's own parts directly, at a fixed concurrency, on a real SQLite (or PostgreSQL)
store: for each request the gate finds the key (``Gate.check``), ``Admission.admit``
counts it against the rate limits and reserves its worst case, a yield stands in for the
upstream, and ``Admission.finished`` settles it. The figure is the process's CPU time (every
thread: the store's work runs on worker threads) per request, auth on minus the same loop
with auth off, measured in the same run, rounds alternating:

    python benchmarks/auth_hot_path.py                      # a key with a budget and limits
    python benchmarks/auth_hot_path.py --key limits         # rate limits only
    python benchmarks/auth_hot_path.py --profile            # cProfile's top entries, auth on
    python benchmarks/auth_hot_path.py --rate-limits redis --redis-url redis://127.0.0.1:6379

It runs on uvloop when installed, as ``polyroute serve`` does (uvicorn picks it): the store's
work is handed between the loop and a thread, whose cost depends on the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from polyroute.auth.keys import KEY_SCOPE
from polyroute.auth.metrics import KeyMetrics
from polyroute.auth.spec import KeySpec
from polyroute.config import AuthConfig, Config
from polyroute.gateway.admission import Admission
from polyroute.gateway.auth import Gate
from polyroute.gateway.protocol import ChatCompletionRequest
from polyroute.gateway.windows import shared_windows
from polyroute.providers.pool import ProviderPool
from polyroute.store import Store
from polyroute.store.keys import KeyStore
from polyroute.store.recorder import RequestRecord

T = TypeVar("T")
ADMIN_KEY = "bench-admin-key-0123456789"
TARGET_MS = 0.2
BODY = orjson.dumps(
    {
        "model": "echo",
        "messages": [{"role": "user", "content": "polyroute benchmark says hello"}],
        "max_tokens": 16,
    }
)


@dataclass(slots=True)
class Parts:
    gate: Gate | None
    admission: Admission | None
    secret: str


def config(db_url: str, rate_limits: str = "memory", redis_url: str | None = None) -> Config:
    return Config.model_validate(
        {
            "store": {"database_url": db_url},
            "auth": {"rate_limits": rate_limits, "redis_url": redis_url},
            "providers": {"up": {"api": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [
                {"name": "echo", "provider": "up", "input_price": 0.01, "output_price": 0.01}
            ],
        }
    )


def build(cfg: Config, store: Store, *, auth: bool, budget: bool) -> Parts:
    """The gate and admission as the gateway builds them (auth off: neither)."""
    if not auth:
        return Parts(None, None, "")
    keys = KeyStore(store.engine)
    spec: dict[str, Any] = {"rpm": 10_000_000, "tpm": 10_000_000_000, "parallel": 100_000}
    if budget:
        spec["budget_usd"] = 1_000_000
    _, secret = keys.create_key(KeySpec.model_validate(spec))
    gate = Gate(cfg, keys)
    metrics = KeyMetrics(CollectorRegistry())  # as the gateway has them with /metrics on
    assert isinstance(cfg.auth, AuthConfig)
    windows = shared_windows(cfg.auth, keys)
    admission = Admission(cfg, keys, ProviderPool(cfg), None, metrics=metrics, windows=windows)
    return Parts(gate, admission, secret)


def scope_for(parts: Parts) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    if parts.secret:
        headers.append((b"authorization", f"Bearer {parts.secret}".encode()))
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": headers,
        "query_string": b"",
        "client": ("127.0.0.1", 1),
    }


async def one(parts: Parts, n: int, upstream_s: float) -> None:
    """One request's gate, admission, a stand-in upstream, and settlement."""
    scope = scope_for(parts)
    if parts.gate is not None:
        refused = await parts.gate.check(scope)
        assert refused is None, refused.body
    request = Request(scope)
    body = orjson.loads(BODY)
    chat = ChatCompletionRequest.model_validate(body)
    trace_id = f"chatcmpl-{n}"
    if parts.admission is not None:
        await parts.admission.admit(request, chat, body, trace_id)
        assert KEY_SCOPE in scope
    # The upstream: its answer times spread the requests out as a server's clients do (at
    # once, all 64 would reach the store in lockstep and share every transaction).
    await asyncio.sleep(upstream_s * ((n * 0.618034) % 1.0) * 2)
    record = RequestRecord(
        id=trace_id, created_at=datetime.now(UTC), requested_model="echo", stream=False
    )
    record.model, record.input_tokens, record.output_tokens = "echo", 12, 16
    record.cost_usd, record.cost_status = 28 * 0.01e-6, "known"
    if parts.admission is not None:
        parts.admission.finished(record)
        parts.admission.release(scope)


async def round_(
    parts: Parts, requests: int, concurrency: int, start: int, upstream_s: float
) -> float:
    """CPU seconds the process spent on ``requests`` at ``concurrency`` (settled included)."""
    queue = iter(range(start, start + requests))

    async def worker() -> None:
        for n in queue:
            await one(parts, n, upstream_s)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if parts.admission is not None:
        await parts.admission.aclose()  # what it still owes the store counts too
    return time.process_time() - cpu


async def measure(
    *,
    key: str = "budget",
    requests: int = 5000,
    concurrency: int = 64,
    rounds: int = 5,
    upstream_ms: float = 20.0,
    database_url: str | None = None,
    rate_limits: str = "memory",
    redis_url: str | None = None,
    profile: bool = False,
) -> dict[str, list[float]]:
    """CPU ms per request of each round: auth ``off`` and ``on``, rounds alternating."""
    with tempfile.TemporaryDirectory(prefix="polyroute-authbench-") as tmp:
        db_url = database_url or f"sqlite:///{Path(tmp) / 'polyroute.db'}"
        os.environ.setdefault("POLYROUTE_ADMIN_KEY", ADMIN_KEY)
        cfg = config(db_url, rate_limits, redis_url)
        up = upstream_ms / 1000
        store = Store(db_url)
        store.migrate()
        sides = {
            "off": build(cfg, store, auth=False, budget=False),
            "on": build(cfg, store, auth=True, budget=key == "budget"),
        }
        for n, parts in enumerate(sides.values()):  # warm-up: imports, compiled statements
            await round_(parts, 500, concurrency, n * 10**8, up)
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            await round_(sides["on"], requests, concurrency, 9 * 10**8, up)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        figures: dict[str, list[float]] = {name: [] for name in sides}
        n = 10 * 10**8
        for _ in range(rounds):
            for name, parts in sides.items():
                n += 10**7
                cpu = await round_(parts, requests, concurrency, n, up)
                figures[name].append(cpu / requests * 1000)
        store.dispose()
    return figures


def summary(figures: dict[str, list[float]]) -> list[str]:
    """The figures as printed: median round per side, added over auth off, every round."""
    off = statistics.median(figures["off"])
    lines = []
    for name, rounds in figures.items():
        median = statistics.median(rounds)
        what = {"off": "auth off", "on": "auth on"}[name]
        added = "" if name == "off" else f", added {median - off:.3f} ms"
        mark = ""
        if name == "on":
            mark = f"  [{'PASS' if median - off <= TARGET_MS else 'MISS'}] ≤ {TARGET_MS} ms"
        each = " ".join(f"{x:.3f}" for x in rounds)
        lines.append(f"  {what:<20} {median:.3f} ms/request{added}{mark}   (rounds: {each})")
    return lines


async def run(args: argparse.Namespace) -> int:
    figures = await measure(
        key=args.key,
        requests=args.requests,
        concurrency=args.concurrency,
        rounds=args.rounds,
        upstream_ms=args.upstream_ms,
        database_url=args.database_url,
        rate_limits=args.rate_limits,
        redis_url=args.redis_url,
        profile=args.profile,
    )
    what = "a budget and rate limits" if args.key == "budget" else "rate limits"
    where = "PostgreSQL" if args.database_url else "SQLite"
    if args.rate_limits != "memory":
        where += f"; RPM and TPM shared through {args.rate_limits}"
    print(
        f"auth hot path in process, CPU per request, median round ({what}; {args.requests} "
        f"requests a round at concurrency {args.concurrency}, {args.rounds} rounds; {where}; "
        f"{type(asyncio.get_running_loop()).__module__.split('.')[0]} loop)"
    )
    print("\n".join(summary(figures)))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  load average {load}")
    print(f"\nReproduce: {shlex.join(['python', 'benchmarks/auth_hot_path.py', *sys.argv[1:]])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=5000, help="per round [5000]")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight [64]")
    p.add_argument("--rounds", type=int, default=5, help="rounds per side, alternating [5]")
    p.add_argument(
        "--upstream-ms", type=float, default=20.0, help="the upstream's mean answer time [20]"
    )
    p.add_argument("--key", choices=("budget", "limits"), default="budget", help="[budget]")
    p.add_argument("--database-url", help="a PostgreSQL URL instead of a temporary SQLite file")
    p.add_argument(
        "--rate-limits",
        choices=("memory", "database", "redis"),
        default="memory",
        help="auth.rate_limits: where RPM and TPM are also counted [memory]",
    )
    p.add_argument("--redis-url", help="with --rate-limits redis: e.g. redis://127.0.0.1:6379/0")
    p.add_argument("--profile", action="store_true", help="print cProfile's top entries first")
    p.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="[auto: uvloop if installed]",
    )
    args = p.parse_args(argv)
    return run_on(args.loop, run(args))


def run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the loop the gateway would use: uvloop when installed (``auto``)."""
    if loop != "asyncio":
        try:
            import uvloop
        except ModuleNotFoundError:
            if loop == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


if __name__ == "__main__":
    sys.exit(main())
