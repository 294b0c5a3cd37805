"""What telemetry costs on the request path: the observers' time per finished request.

The gateway calls each observer once per request, on the event loop, right after the record
is queued for the store. This times those calls on a realistic mix of records (non-stream,
stream, errors, unknown prices, a client's made-up model name) against a do-nothing observer
measured in the same run:

- ``metrics``: the Prometheus observer (``GatewayMetrics.observe``);
- ``spans``: the OpenTelemetry observer building a span and queueing it on a
  BatchSpanProcessor (the exporter is a no-op here: exporting runs in the processor's own
  thread, off the request path);
- one ``/metrics`` scrape (``exposition``) with every series of the mix present.

    python benchmarks/telemetry_overhead.py            # ~10 s
    python benchmarks/telemetry_overhead.py --quick    # ~3 s
    python benchmarks/telemetry_overhead.py --multiprocess   # as a worker of serve --workers N

``--multiprocess`` keeps the counters in prometheus-client's memory-mapped files, as each
worker of ``polyroute serve --workers N`` does, and scrapes by adding up the files.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if "--multiprocess" in sys.argv:  # read by prometheus-client once, when it is imported
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="polyroute-bench-mp-")

from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from polyroute.config import Config  # noqa: E402
from polyroute.store.recorder import RequestRecord  # noqa: E402
from polyroute.telemetry import GatewayMetrics  # noqa: E402
from polyroute.telemetry.tracing import SpanObserver  # noqa: E402

MODELS = [f"model-{i}" for i in range(20)]
ROUTERS = ["auto-cheap", "auto-best"]


class _NoExport(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def records(n: int) -> list[RequestRecord]:
    """A mix like real traffic: mostly answers, some streams, some errors."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        model = MODELS[i % len(MODELS)]
        base = RequestRecord(
            id=f"chatcmpl-{uuid4().hex}", created_at=now, requested_model=model, stream=False,
            model=model, provider="up", upstream_model=model, latency_ms=800.0 + i % 997,
            input_tokens=500 + i % 300, output_tokens=200 + i % 100,
            cost_usd=1e-4, cost_status="known",
        )  # fmt: skip
        kind = i % 10
        if kind < 3:
            base.stream, base.ttft_ms = True, 80.0 + i % 50
        elif kind == 3:
            base.router, base.requested_model = ROUTERS[i % 2], ROUTERS[i % 2]
        elif kind == 4:
            base.cost_usd, base.cost_status = None, "unknown"
        elif kind == 5:
            base.status, base.error, base.input_tokens, base.output_tokens = 502, "down", None, None
        elif kind == 6:
            base.requested_model, base.model, base.status = f"nonsense-{i}", None, 404
        out.append(base)
    return out


def per_call_ns(observe: Callable[[RequestRecord], None], recs: list[RequestRecord]) -> float:
    gc.disable()  # measure the call, not a collection that happens to fall inside it
    try:
        t0 = time.perf_counter_ns()
        for r in recs:
            observe(r)
        return (time.perf_counter_ns() - t0) / len(recs)
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument(
        "--multiprocess", action="store_true", help="counters in files, as with --workers N"
    )
    args = parser.parse_args()
    n, rounds = (20_000, 5) if args.quick else (50_000, 9)

    config = Config.model_validate(
        {
            "providers": {"up": {"api": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [{"name": m, "provider": "up"} for m in MODELS],
            "routers": {r: {"kind": "random"} for r in ROUTERS},
        }
    )
    metrics = GatewayMetrics(MODELS, ROUTERS)
    spans = SpanObserver.from_config(
        config, BatchSpanProcessor(_NoExport(), max_queue_size=n * 2, schedule_delay_millis=50)
    )
    recs = records(n)

    def nothing(_r: RequestRecord) -> None:
        pass

    targets: dict[str, Callable[[RequestRecord], None]] = {
        "baseline (empty observer)": nothing,
        "metrics": metrics.observe,
        "spans (BatchSpanProcessor)": spans,
    }
    for observe in targets.values():  # warm-up: first calls create label children
        per_call_ns(observe, recs[:2000])
    results: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, observe in targets.items():  # interleaved: a busy neighbour slows all alike
            results[name].append(per_call_ns(observe, recs))

    scrape = []
    for _ in range(rounds * 5):
        t0 = time.perf_counter_ns()
        body, _ctype = metrics.exposition()
        scrape.append(time.perf_counter_ns() - t0)
    spans.shutdown()

    mode = "multiprocess files" if args.multiprocess else "in memory"
    print(f"telemetry observers, {n} records x {rounds} rounds, counters {mode}, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"{'observer':<30} {'median µs/request':>18} {'min':>8} {'max':>8}")
    base = statistics.median(results["baseline (empty observer)"])
    for name, values in results.items():
        med = statistics.median(values)
        extra = "" if name.startswith("baseline") else f"   (+{(med - base) / 1000:.2f} µs)"
        print(
            f"{name:<30} {med / 1000:>18.2f} {min(values) / 1000:>8.2f} "
            f"{max(values) / 1000:>8.2f}{extra}"
        )
    lines = body.count(b"\n")
    print(
        f"one /metrics scrape: median {statistics.median(scrape) / 1e6:.2f} ms "
        f"for {lines} lines ({len(body)} bytes)"
    )
    flags = " --quick" * args.quick + " --multiprocess" * args.multiprocess
    print(f"reproduce: python benchmarks/telemetry_overhead.py{flags}")
    if args.multiprocess:
        import shutil

        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
