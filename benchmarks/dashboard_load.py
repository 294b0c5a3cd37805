"""How fast the dashboard's API answers over a full store, and what it costs the chat path.

Fills a SQLite store with N requests spread over the last 24 hours (a third routed by each
of two routers, one in ten with feedback, some errors), serves it with the echo upstream
behind a real gateway on 127.0.0.1, then prints:

1. each dashboard endpoint's median and worst time over the 24-hour window;
2. chat completion latency (median, p99) alone, then while pages poll the dashboard
   without pause (far more than people looking at it would).

    python benchmarks/dashboard_load.py              # 100,000 stored requests
    python benchmarks/dashboard_load.py --rows 20000 --chats 200
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import remote_config, serving  # noqa: E402
from tests.support.echo_upstream import running_echo_upstream  # noqa: E402

from polyroute.gateway import create_app  # noqa: E402
from polyroute.store import Store, schema  # noqa: E402

ENDPOINTS = [
    "/ui/api/summary", "/ui/api/timeseries", "/ui/api/model-mix", "/ui/api/feedback",
    "/ui/api/routers", "/ui/api/traces?limit=25", "/ui/api/traces?model=b&status=error",
]  # fmt: skip


def fill(url: str, rows: int) -> str:
    """Write ``rows`` requests (and feedback on a tenth) over the last day; return one id."""
    store = Store(url)
    store.migrate()
    rng = random.Random(1)
    now = datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    decision = json.dumps({"router": "ucb", "model": "a", "reason": "best", "scores": {"a": 1}})
    # In time order, as the recorder writes them.
    offsets = sorted((rng.uniform(0, 86400) for _ in range(rows)), reverse=True)
    with store.engine.begin() as conn:
        for i in range(rows):
            router = rng.choice(["ucb", "thompson", None])
            ok = rng.random() > 0.03
            batch.append({
                "id": f"r{i}", "created_at": now - timedelta(seconds=offsets[i]),
                "requested_model": router or "a", "model": rng.choice("abc"), "provider": "up",
                "upstream_model": None, "router": router, "stream": False,
                "status": 200 if ok else 502, "input_tokens": 50, "output_tokens": 80,
                "cached_tokens": None, "latency_ms": rng.uniform(50, 900), "ttft_ms": None,
                "cost_usd": 0.0002, "cost_status": "known", "error": None if ok else "down",
                "decision": decision if router else None, "request_body": None,
                "response_text": None,
            })  # fmt: skip
            if i % 10 == 0:
                feedback.append({
                    "request_id": f"r{i}", "created_at": now, "score": rng.random(),
                    "kind": "number", "label": None, "source": "bench", "comment": None,
                })  # fmt: skip
            if len(batch) == 5000:
                conn.execute(schema.requests.insert(), batch)
                batch = []
        if batch:
            conn.execute(schema.requests.insert(), batch)
        conn.execute(schema.feedback.insert(), feedback)
    store.dispose()
    return "r0"


def timed(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    r = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    r.raise_for_status()
    return elapsed


def chat_latencies(client: httpx.Client, n: int) -> list[float]:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.post("/v1/chat/completions", json=body).raise_for_status()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chats", type=int, default=500)
    parser.add_argument("--pollers", type=int, default=2, help="dashboard pages polling at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_echo_upstream() as upstream:
        url = f"sqlite:///{tmp}/bench.db"
        t0 = time.perf_counter()
        trace_id = fill(url, args.rows)
        print(f"filled {args.rows:,} requests in {time.perf_counter() - t0:.1f} s")
        with serving(create_app(remote_config(upstream.base_url, url))) as base:
            root = base.removesuffix("/v1")
            with httpx.Client(base_url=root, timeout=60) as client:
                print(f"\n{'endpoint (24 h window)':44} {'median':>9} {'worst':>9}")
                for path in [*ENDPOINTS, f"/ui/api/traces/{trace_id}"]:
                    times = [timed(client, path) for _ in range(7)]
                    print(f"{path:44} {statistics.median(times):7.1f}ms {max(times):7.1f}ms")

                chat_latencies(client, 50)  # warm up connections
                alone = chat_latencies(client, args.chats)
                stop = threading.Event()
                polls = [0]

                def poll() -> None:
                    with httpx.Client(base_url=root, timeout=60) as c:
                        while not stop.is_set():
                            for path in ENDPOINTS:
                                c.get(path)
                                polls[0] += 1

                threads = [threading.Thread(target=poll) for _ in range(args.pollers)]
                for t in threads:
                    t.start()
                start = time.perf_counter()
                busy = chat_latencies(client, args.chats)
                seconds = time.perf_counter() - start
                stop.set()
                for t in threads:
                    t.join()
    print(f"\nchat completions (echo upstream, {args.chats} sequential requests)")
    print(f"  {'':34} {'median':>9} {'p99':>9}")
    print(f"  {'alone':34} {statistics.median(alone):7.2f}ms {p(alone, 0.99):7.2f}ms")
    label = f"with {args.pollers} pages polling ({polls[0] / seconds:.0f} API calls/s)"
    print(f"  {label:34} {statistics.median(busy):7.2f}ms {p(busy, 0.99):7.2f}ms")
    print(
        f"\nreproduce: python benchmarks/dashboard_load.py --rows {args.rows} --chats {args.chats}"
    )


if __name__ == "__main__":
    main()
