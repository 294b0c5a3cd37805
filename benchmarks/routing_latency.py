"""What routing adds to a request: embedding a prompt, a learned decision, the simple routers.

Figures (p50 / p99 over ``--runs`` calls, after warm-up, one request at a time):

- **embedding**: the static routing embedding (``minilm-static``: the mean of
  all-MiniLM-L6-v2's input token embeddings) and ``minilm-lexical`` (that vector joined with
  hashed word and character n-grams; target ≤ 2 ms) on one 200-token prompt and a short
  30-token one, against the full all-MiniLM-L6-v2 encoder (numpy) on the same prompts, with BLAS
  capped to 1 thread and with BLAS's default, and the encoder's matrix products alone (the
  same shapes through the same BLAS): the floor of any float32 run of the encoder here.
- **decision**: a learned router's work after the embedding (predict + the knob), for kNN,
  MLP and mf (default settings: its wide n-gram term included, which reads the text) fitted
  on random data of the LLMRouter set's size (5,608 prompts × 9 models); and a
  full ``route()`` of the 200-token prompt, embedding included (the target: p50 ≤ 10 ms),
  with each fast embedding and with the full encoder.
- **non-learned**: ``random`` and ``wrr`` ``route()`` over 9 candidates (target: 0.1 ms),
  against an empty function call as baseline.

Usage::

    python benchmarks/routing_latency.py               # 200 runs each
    python benchmarks/routing_latency.py --runs 50 --strict   # exit 2 if a target is missed
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute.embeddings.base import Embedder  # noqa: E402
from polyroute.embeddings.lexical import LexicalEmbedder  # noqa: E402
from polyroute.embeddings.minilm import MiniLMEmbedder  # noqa: E402
from polyroute.embeddings.static import StaticMiniLMEmbedder  # noqa: E402
from polyroute.routing.base import Candidate, RouteRequest  # noqa: E402
from polyroute.routing.routers.knn import KNNRouter  # noqa: E402
from polyroute.routing.routers.learned import LearnedRouter  # noqa: E402
from polyroute.routing.routers.mf import MFRouter  # noqa: E402
from polyroute.routing.routers.mlp import MLPRouter  # noqa: E402
from polyroute.routing.routers.random import RandomRouter  # noqa: E402
from polyroute.routing.routers.wrr import WeightedRoundRobinRouter  # noqa: E402
from polyroute.routing.tradeoff import select  # noqa: E402

ROUTE_TARGET_MS = 10.0
LEXICAL_TARGET_MS = 2.0
SIMPLE_TARGET_MS = 0.1
WORDS = (
    "the committee reviewed quarterly results and asked whether the new routing policy "
    "would lower costs without hurting answer quality for customers in every region"
)


def timed(fn: Callable[[], object], runs: int, warmup: int = 5) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t
    return float(np.percentile(samples, 50) * 1e3), float(np.percentile(samples, 99) * 1e3)


def prompt_of(embedder: MiniLMEmbedder, tokens: int) -> str:
    """A text of exactly ``tokens`` model tokens, [CLS] and [SEP] included."""
    vocabulary = WORDS.split()
    words: list[str] = []
    i = 0
    while embedder.count_tokens([" ".join(words)])[0] < tokens - 2:
        words.append(vocabulary[i % len(vocabulary)])
        i += 1
    while embedder.count_tokens([" ".join(words)])[0] > tokens - 2:
        words.pop()
    return " ".join(words)


def matmul_floor(tokens: int) -> Callable[[], object]:
    """The encoder's matrix products for one prompt, nothing else."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((tokens, 384), dtype=np.float32)
    inner = rng.standard_normal((tokens, 1536), dtype=np.float32)
    w = {
        k: rng.standard_normal(s, dtype=np.float32)
        for k, s in {
            "qkv": (384, 1152),
            "out": (384, 384),
            "in": (384, 1536),
            "ffn": (1536, 384),
        }.items()
    }
    q = rng.standard_normal((12, tokens, 32), dtype=np.float32)

    def run() -> None:
        for _ in range(6):
            h @ w["qkv"]
            h @ w["out"]
            h @ w["in"]
            inner @ w["ffn"]
            (q @ q.transpose(0, 2, 1)) @ q

    return run


def learned(kind: str, embedder: Embedder) -> LearnedRouter:
    rng = np.random.default_rng(0)
    models = [f"model-{j}" for j in range(9)]
    keys = rng.standard_normal((5608, embedder.dim)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    scores = (rng.random((5608, 9)) < 0.5).astype(np.float64)
    # Texts of random words, so that mf's wide term has as many buckets in use as a real one.
    vocabulary = [f"w{i}" for i in range(20_000)]
    texts = [" ".join(rng.choice(vocabulary, 60)) for _ in range(5608)]
    routers = {"knn": KNNRouter, "mlp": MLPRouter, "mf": MFRouter}
    router: LearnedRouter = routers[kind](embedder=embedder)
    router.fit(keys, scores, models, texts)
    router.prices = {m: (0.1 * (j + 1), 0.1 * (j + 1)) for j, m in enumerate(models)}
    router.lam = 100.0
    return router


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--strict", action="store_true", help="exit 2 if a target is missed")
    args = parser.parse_args()
    runs = args.runs

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    static = StaticMiniLMEmbedder()
    lexical = LexicalEmbedder(static=static)
    one = MiniLMEmbedder(threads=1)
    default = MiniLMEmbedder()
    long_prompt, short_prompt = prompt_of(one, 200), prompt_of(one, 30)
    rows: list[tuple[str, float, float, str]] = []

    def add(
        label: str, fn: Callable[[], object], target: str = "", n: int = runs
    ) -> tuple[float, float]:
        p50, p99 = timed(fn, n)
        rows.append((label, p50, p99, target))
        return p50, p99

    encoder_runs = max(20, runs // 4)
    add("embed 200 tokens, minilm-static", lambda: static.embed([long_prompt]))
    add("embed 30 tokens, minilm-static", lambda: static.embed([short_prompt]))
    lexical_p50, _ = add(
        "embed 200 tokens, minilm-lexical",
        lambda: lexical.embed([long_prompt]),
        f"≤ {LEXICAL_TARGET_MS:g} ms",
    )
    add("embed 30 tokens, minilm-lexical", lambda: lexical.embed([short_prompt]))
    add(
        "embed 200 tokens, full encoder, BLAS 1 thread",
        lambda: one.embed([long_prompt]),
        "",
        encoder_runs,
    )
    add(
        "embed 200 tokens, full encoder, BLAS default",
        lambda: default.embed([long_prompt]),
        "",
        encoder_runs,
    )
    with one._limit():  # the floor under the same thread cap
        add("  baseline: its matmuls alone, 1 thread", matmul_floor(200), "", encoder_runs)
    add(
        "embed 30 tokens, full encoder, BLAS 1 thread",
        lambda: one.embed([short_prompt]),
        "",
        encoder_runs,
    )

    candidates = [Candidate(f"model-{j}") for j in range(9)]
    request = RouteRequest(prompt=long_prompt, input_tokens=200)
    costs = np.array([[(j + 1) * 1e-5 for j in range(9)]])
    route_worst = 0.0
    for kind in ("knn", "mlp", "mf"):
        for label, embedder in (("minilm-static", static), ("minilm-lexical", lexical)):
            router = learned(kind, embedder)
            embedded = embedder.embed([long_prompt])
            add(
                f"{kind} decision (predict + knob), {label}, no embedding",
                lambda r=router, e=embedded: select(  # type: ignore[misc]
                    r.predict_embeddings(e, [long_prompt]), costs, r.lam
                ),
            )
            p50, _ = add(
                f"{kind} route(), {label} embedding included",
                lambda r=router: r.route(request, candidates),  # type: ignore[misc]
                f"≤ {ROUTE_TARGET_MS:g} ms",
            )
            route_worst = max(route_worst, p50)
        encoder_router = learned(kind, one)
        add(
            f"{kind} route(), full encoder included",
            lambda r=encoder_router: r.route(request, candidates),  # type: ignore[misc]
            "",
            encoder_runs,
        )

    simple_worst = 0.0
    rnd = RandomRouter(seed=0)
    wrr = WeightedRoundRobinRouter(weights={c.name: j + 1 for j, c in enumerate(candidates)})
    simple_worst = max(
        simple_worst,
        add(
            "random route()",
            lambda: rnd.route(request, candidates),
            f"≤ {SIMPLE_TARGET_MS:g} ms",
            runs * 10,
        )[0],
    )
    simple_worst = max(
        simple_worst,
        add(
            "wrr route()",
            lambda: wrr.route(request, candidates),
            f"≤ {SIMPLE_TARGET_MS:g} ms",
            runs * 10,
        )[0],
    )
    add("  baseline: an empty call", lambda: None, "", runs * 10)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'':{width}}  {'p50 ms':>9}  {'p99 ms':>9}  target")
    for label, p50, p99, target in rows:
        print(f"{label:{width}}  {p50:9.3f}  {p99:9.3f}  {target}")
    print(
        "\nreproduce: "
        + shlex.join([sys.executable, "benchmarks/routing_latency.py", *sys.argv[1:]])
    )
    missed = (
        route_worst > ROUTE_TARGET_MS
        or simple_worst > SIMPLE_TARGET_MS
        or lexical_p50 > LEXICAL_TARGET_MS
    )
    if missed:
        print(
            f"target missed: learned route() p50 {route_worst:.1f} ms "
            f"(target {ROUTE_TARGET_MS:g}), minilm-lexical embedding p50 {lexical_p50:.2f} ms "
            f"(target {LEXICAL_TARGET_MS:g}), "
            f"simple routers p50 {simple_worst:.4f} ms (target {SIMPLE_TARGET_MS:g})"
        )
    return 2 if (missed and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
