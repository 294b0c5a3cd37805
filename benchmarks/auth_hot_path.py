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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request

from polyroute.auth.keys import KEY_SCOPE
from polyroute.auth.spec import KeySpec
from polyroute.config import Config
from polyroute.gateway.admission import Admission
from polyroute.gateway.auth import Gate
from polyroute.gateway.protocol import ChatCompletionRequest
from polyroute.providers.pool import ProviderPool
from polyroute.store import Store
from polyroute.store.keys import KeyStore
from polyroute.store.recorder import RequestRecord

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


def config(db_url: str) -> Config:
    return Config.model_validate(
        {
            "store": {"database_url": db_url},
            "auth": {"rate_limits": "memory"},
            "providers": {"up": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
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
    return Parts(gate, Admission(cfg, keys, ProviderPool(cfg), None), secret)


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


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="polyroute-authbench-") as tmp:
        db_url = args.database_url or f"sqlite:///{Path(tmp) / 'polyroute.db'}"
        os.environ["POLYROUTE_ADMIN_KEY"] = ADMIN_KEY
        cfg = config(db_url)
        up = args.upstream_ms / 1000
        store = Store(db_url)
        store.migrate()
        off = build(cfg, store, auth=False, budget=False)
        on = build(cfg, store, auth=True, budget=args.key == "budget")
        await round_(off, 500, args.concurrency, 0, up)  # warm-up: imports, compiled statements
        await round_(on, 500, args.concurrency, 10**8, up)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await round_(on, args.requests, args.concurrency, 2 * 10**8, up)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        figures: dict[str, list[float]] = {"off": [], "on": []}
        for r in range(args.rounds):
            for name, parts in (("off", off), ("on", on)):
                start = (3 + r * 2 + (name == "on")) * 10**8
                cpu = await round_(parts, args.requests, args.concurrency, start, up)
                figures[name].append(cpu / args.requests * 1000)
        store.dispose()
    a, b = statistics.median(figures["off"]), statistics.median(figures["on"])
    added = b - a
    mark = "PASS" if added <= TARGET_MS else "MISS"
    what = "a budget and rate limits" if args.key == "budget" else "rate limits"
    where = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"auth hot path in process ({what}; {args.requests} requests a round at concurrency "
        f"{args.concurrency}, {args.rounds} rounds; {where})"
    )
    print(
        f"  CPU per request, median round: auth off {a:.3f} ms, auth on {b:.3f} ms, "
        f"added {added:.3f} ms  [{mark}] ≤ {TARGET_MS} ms"
    )
    print(
        "  rounds (ms/request): off "
        + " ".join(f"{x:.3f}" for x in figures["off"])
        + "; on "
        + " ".join(f"{x:.3f}" for x in figures["on"])
    )
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
    p.add_argument("--profile", action="store_true", help="print cProfile's top entries first")
    args = p.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
