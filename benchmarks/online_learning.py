"""Online routers on a replayed stream: how fast do bandits learn what an offline router knows?

Data: LLMRouter's ``train.json`` (5,608 prompts) and ``test.json`` less the questions also in
train (381), 9 models, scores in [0, 1]. Costs: ``default_llm.json`` prices × the prompt's
tokens (MiniLM WordPiece) + 256 assumed output tokens (:mod:`polyroute.routing_eval.costs`); the
online routers see the same figure through ``Candidate`` prices and ``RouteRequest`` tokens.

Stream: ``--requests`` prompts drawn with replacement from train ∪ test (seeded; one stream
per seed, the same for every router). Each router picks a model and is told that model's
true score on the prompt, and only that one (bandit feedback). Utility is
``quality − λ·cost`` (λ in quality points per USD of one request).

Measured on the same stream:

- **ucb1**, **thompson**, **linucb** (prompt embedding, 32-d projection, no prior), and
  **linucb+prior** (warm-started from the offline router's predictions);
- **random**; **best fixed**, the model with the best average utility on the stream (in
  hindsight); **oracle**, each prompt's best model (regret 0 by definition);
- **offline**: the best learned router (``train.BEST_KIND``) trained with full information
  (every model's score on every training prompt). Cross-fitted so that it is never scored on
  a prompt it learned from: a train prompt's decision comes from the 5-fold out-of-fold model,
  a test prompt's from the model fitted on all of train. The prior of linucb+prior is the
  same out-of-fold prediction.

Printed per λ and checkpoint (mean over seeds): quality and cost over the last ``--window``
requests (where a router's policy *is* at that point), cumulative regret (in utility) against
the oracle and against the best fixed model, and average quality and cost so far; then where
each router ends up against the offline router, and from which request its recent quality
stays within 0.02 of the offline router's. ``--plot`` draws the curves after every request.

Usage::

    python benchmarks/online_learning.py                  # λ = 0 and 500, 2 × 6000 requests
    python benchmarks/online_learning.py --lam 0 --requests 2000 --seeds 1 --plot /tmp/o.png

Embeddings come from the CLI's cache (``polyroute train`` fills it); on a cold cache the
5,989 prompts take a few minutes to embed on 2 cores, once.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute.cli.routing import default_cache_dir  # noqa: E402
from polyroute.embeddings.base import CachedEmbedder  # noqa: E402
from polyroute.embeddings.minilm import MiniLMEmbedder  # noqa: E402
from polyroute.routing.base import Candidate, RouteRequest  # noqa: E402
from polyroute.routing.online import LinUCBRouter, OnlineRouter, ThompsonRouter, UCB1Router  # noqa: E402
from polyroute.routing.pricing import DEFAULT_OUTPUT_TOKENS  # noqa: E402
from polyroute.routing.registry import ROUTERS  # noqa: E402
from polyroute.routing.routers.learned import LearnedRouter  # noqa: E402
from polyroute.routing.routers.random import RandomRouter  # noqa: E402
from polyroute.routing.tradeoff import FloatArray, select  # noqa: E402
from polyroute.routing_eval.costs import default_token_counter, load_prices  # noqa: E402
from polyroute.routing_eval.importers import import_dataset  # noqa: E402
from polyroute.routing_eval.train import BEST_KIND, out_of_fold  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "llmrouter" / "data"
CHECKPOINTS = (100, 300, 1000, 2000, 3000, 4000, 6000, 10000, 20000)
#: λ values run when none is given: quality only, and one where cheap models win.
DEFAULT_LAMS = (0.0, 500.0)
#: With a prior the starting point is worth more than the baseline: trust it more.
PRIOR_RIDGE = 30.0


@dataclass
class Pool:
    """Every prompt the stream draws from, with all models' true scores and costs."""

    prompts: list[str]
    models: list[str]
    scores: FloatArray  # (n, m)
    costs: FloatArray  # (n, m) USD
    tokens: NDArray[np.int64]  # (n,) prompt tokens, as the costs counted them
    is_train: NDArray[np.bool_]
    prices: dict[str, tuple[float, float]]


def load_pool(data: Path) -> Pool:
    pre = data / "dcrouter_preprocessed"
    train, _ = import_dataset("llmrouter", pre / "train.json")
    test, _ = import_dataset("llmrouter", pre / "test.json")
    train = train.dedupe()
    test = test.dedupe().without_prompts_in(train).subset_models(train.models)
    prices = load_prices(data / "example_data" / "llm_candidates" / "default_llm.json")
    assert train.costs is not None and test.costs is not None
    assert train.has_all_scores and test.has_all_scores
    prompts = train.prompts + test.prompts
    tokens = np.asarray(default_token_counter().count(prompts), dtype=np.int64)
    pool = Pool(
        prompts=prompts,
        models=list(train.models),
        scores=np.vstack([train.scores, test.scores]),
        costs=np.vstack([train.costs, test.costs]),
        tokens=tokens,
        is_train=np.arange(len(prompts)) < len(train),
        prices={m: prices[m] for m in train.models},
    )
    # The routers must see the very costs the data holds: same tokens, same prices.
    for j, m in enumerate(pool.models):
        pin, pout = pool.prices[m]
        expect = (tokens * pin + DEFAULT_OUTPUT_TOKENS * pout) / 1e6
        assert np.allclose(expect, pool.costs[:, j], rtol=1e-9), m
    return pool


def offline_predictions(pool: Pool, embeddings: NDArray[np.float32]) -> FloatArray:
    """The offline router's predicted quality, never for a prompt it was fitted on."""
    from polyroute.routing_eval.dataset import RoutingDataset

    def build() -> LearnedRouter:
        cls = ROUTERS.get(BEST_KIND)
        assert issubclass(cls, LearnedRouter)
        return cls(BEST_KIND)

    train = pool.is_train
    ds = RoutingDataset(
        ids=[str(i) for i in np.flatnonzero(train)],
        prompts=[p for p, t in zip(pool.prompts, train, strict=True) if t],
        models=pool.models,
        scores=pool.scores[train],
        costs=pool.costs[train],
        tasks=[None] * int(train.sum()),
    )
    predicted = np.empty(pool.scores.shape)
    predicted[train] = out_of_fold(build, embeddings[train], ds, folds=5, seed=0)
    full = build()
    full.fit(embeddings[train], pool.scores[train], pool.models, ds.prompts)
    rest = [p for p, t in zip(pool.prompts, train, strict=True) if not t]
    predicted[~train] = full.predict_embeddings(embeddings[~train], rest)
    return predicted


def replay(
    router: OnlineRouter | RandomRouter,
    rows: NDArray[np.intp],
    pool: Pool,
    contexts: FloatArray | None,
) -> NDArray[np.intp]:
    """Route each request of the stream and feed back the chosen model's score."""
    cands = [Candidate(m, *pool.prices[m]) for m in pool.models]
    column = {m: j for j, m in enumerate(pool.models)}
    chosen = np.empty(len(rows), dtype=np.intp)
    for t, i in enumerate(rows):
        request = RouteRequest(prompt=pool.prompts[i], input_tokens=int(pool.tokens[i]))
        ctx = None if contexts is None else contexts[i]
        if isinstance(router, OnlineRouter):
            model = router.route_with_context(request, cands, ctx).model
            router.update(model, float(pool.scores[i, column[model]]), ctx)
        else:
            model = router.route(request, cands).model
        chosen[t] = column[model]
    return chosen


def run_stream(
    pool: Pool,
    contexts: FloatArray,
    predicted: FloatArray,
    lam: float,
    rows: NDArray[np.intp],
    seed: int,
) -> dict[str, NDArray[np.intp]]:
    """Every router's chosen column per request of one stream."""
    by_bytes = {contexts[i].tobytes(): i for i in range(len(contexts))}

    def prior(e: FloatArray) -> dict[str, float]:
        return dict(zip(pool.models, predicted[by_bytes[e.tobytes()]].tolist(), strict=True))

    online: dict[str, tuple[OnlineRouter, bool]] = {
        "ucb1": (UCB1Router(lam=lam), False),
        "thompson": (ThompsonRouter(lam=lam, seed=seed), False),
        "linucb": (LinUCBRouter(lam=lam, seed=seed), True),
        "linucb+prior": (
            LinUCBRouter(
                lam=lam, seed=seed, ridge=PRIOR_RIDGE, prior=prior, prior_name=f"{BEST_KIND}-oof"
            ),
            True,
        ),
    }
    out: dict[str, NDArray[np.intp]] = {}
    for name, (router, contextual) in online.items():
        out[name] = replay(router, rows, pool, contexts if contextual else None)
    out["random"] = replay(RandomRouter(seed=seed), rows, pool, None)
    utility = pool.scores - lam * pool.costs
    best = int(np.argmax(utility[rows].mean(axis=0)))
    out["best fixed"] = np.full(len(rows), best, dtype=np.intp)
    out["offline"] = select(predicted[rows], pool.costs[rows], lam)
    out["oracle"] = select(pool.scores[rows], pool.costs[rows], lam)
    return out


METRICS = ("window", "window_cost", "regret_oracle", "regret_fixed", "quality", "cost")


def summarise(
    pool: Pool, lam: float, streams: list[tuple[NDArray[np.intp], dict[str, NDArray[np.intp]]]],
    window: int,
) -> dict[str, dict[str, FloatArray]]:  # fmt: skip
    """Per router and metric, a (seeds, requests) curve: the value after each request."""
    out: dict[str, dict[str, FloatArray]] = {}
    for name in streams[0][1]:
        curves: dict[str, list[FloatArray]] = {k: [] for k in METRICS}
        for rows, chosen in streams:
            c, best, oracle = chosen[name], chosen["best fixed"], chosen["oracle"]
            q, cost = pool.scores[rows, c], pool.costs[rows, c] * 1000
            u = q - lam * pool.costs[rows, c]
            t = np.arange(1, len(rows) + 1)
            for key, series in (("quality", q), ("cost", cost)):
                curves[key].append(np.cumsum(series) / t)
            for key, series in (("window", q), ("window_cost", cost)):
                total = np.concatenate([[0.0], np.cumsum(series)])
                start = np.maximum(0, t - window)
                curves[key].append((total[t] - total[start]) / (t - start))
            for key, ref in (("regret_oracle", oracle), ("regret_fixed", best)):
                u_ref = pool.scores[rows, ref] - lam * pool.costs[rows, ref]
                curves[key].append(np.cumsum(u_ref - u))
        out[name] = {k: np.stack(v) for k, v in curves.items()}
    return out


def print_tables(
    summary: dict[str, dict[str, FloatArray]], checkpoints: list[int], window: int
) -> None:
    tables = [
        ("window", f"quality over the last {window} requests (where the policy is)", "{:.3f}"),
        ("window_cost", f"cost over the last {window} requests, USD per 1k requests", "{:.3f}"),
        ("regret_oracle", "cumulative regret vs the per-prompt oracle (utility)", "{:.0f}"),
        ("regret_fixed", "cumulative regret vs the best fixed model (< 0: beats it)", "{:.0f}"),
        ("quality", "average quality so far", "{:.3f}"),
        ("cost", "average cost so far, USD per 1k requests", "{:.3f}"),
    ]
    head = "".join(f"{t:>8}" for t in checkpoints)
    at = [t - 1 for t in checkpoints]
    for key, title, fmt in tables:
        print(f"\n  {title}\n  {'requests':<14}{head}")
        for name, res in summary.items():
            if key == "regret_oracle" and name == "oracle":
                continue
            cells = "".join(f"{fmt.format(v):>8}" for v in res[key].mean(axis=0)[at])
            print(f"  {name:<14}{cells}")


def print_verdict(summary: dict[str, dict[str, FloatArray]], window: int) -> None:
    """Where each router ends up, against the offline router, and when it got close."""
    offline = summary["offline"]["window"].mean(axis=0)
    print(f"\n  at the end (last {window} requests) against the offline router")
    print(f"  {'router':<14}{'quality':>9}{'Δ offline':>11}{'USD/1k':>8}"
          f"{'regret/oracle':>15}{'regret/fixed':>14}   within 0.02 of offline from")  # fmt: skip
    for name, res in summary.items():
        window_q = res["window"].mean(axis=0)
        gap = window_q[-1] - offline[-1]
        # The first request from which the recent quality stays within 0.02 of offline's
        # (about two standard errors of a 1000-request window's mean).
        behind = np.flatnonzero(window_q[window - 1 :] < offline[window - 1 :] - 0.02)
        if behind.size == 0:
            since = f"{window}"
        elif behind[-1] + window < len(window_q):
            since = f"{behind[-1] + window + 1}"
        else:
            since = "not yet"
        print(f"  {name:<14}{window_q[-1]:>9.3f}{gap:>+11.3f}{res['window_cost'].mean(0)[-1]:>8.3f}"
              f"{res['regret_oracle'].mean(0)[-1]:>15.0f}{res['regret_fixed'].mean(0)[-1]:>14.0f}"
              f"   {since}")  # fmt: skip


def plot(path: Path, runs: dict[float, dict[str, dict[str, FloatArray]]], window: int) -> None:
    """Regret curves (vs the oracle, vs the best fixed model) and recent quality, per λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("regret_oracle", "cumulative regret vs oracle"),
        ("regret_fixed", "cumulative regret vs best fixed model"),
        ("window", f"quality over the last {window} requests"),
    ]
    fig, axes = plt.subplots(len(runs), 3, figsize=(16, 4.6 * len(runs)), squeeze=False)
    for row, (lam, summary) in enumerate(runs.items()):
        # One colour per router in every panel, whichever lines a panel leaves out.
        colour = {name: f"C{i}" for i, name in enumerate(summary)}
        for col, (key, label) in enumerate(panels):
            ax = axes[row][col]
            for name, res in summary.items():
                if key == "regret_oracle" and name == "oracle":
                    continue
                if key == "regret_fixed" and name in ("oracle", "random"):
                    continue  # far off the scale of the others
                curve = res[key].mean(axis=0)
                t = np.arange(1, len(curve) + 1)
                start = window if key == "window" else 0
                style = ":" if name in ("offline", "best fixed", "oracle", "random") else "-"
                ax.plot(t[start:], curve[start:], style, color=colour[name], lw=1.6, label=name)
            ax.set_xlabel("requests")
            ax.set_title(f"{label} (λ = {lam:g})")
            ax.grid(alpha=0.3)
        axes[row][1].axhline(0, color="grey", lw=0.8)
        axes[row][0].legend(fontsize=8)
        axes[row][2].legend(fontsize=8, ncol=2, loc="lower right", bbox_to_anchor=(1.0, 0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nplot: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA, help="LLMRouter's data/ directory")
    parser.add_argument("--requests", type=int, default=6000, help="stream length")
    parser.add_argument("--seeds", type=int, default=2, help="streams (and router seeds)")
    parser.add_argument(
        "--lam", type=float, action="append", help="λ, quality points per USD (repeatable) [0, 500]"
    )
    parser.add_argument("--window", type=int, default=1000, help="recent-quality window")
    parser.add_argument(
        "--cache-dir", type=Path, default=default_cache_dir(), help="embedding cache (the CLI's)"
    )
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = parser.parse_args()
    lams = args.lam or list(DEFAULT_LAMS)
    cps = [c for c in CHECKPOINTS if c < args.requests] + [args.requests]
    started = time.perf_counter()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print("$ python benchmarks/online_learning.py " + shlex.join(sys.argv[1:]))

    pool = load_pool(args.data)
    n_train = int(pool.is_train.sum())
    print(f"pool: {n_train} train + {len(pool.prompts) - n_train} test prompts, "
          f"{len(pool.models)} models; costs from prices × MiniLM tokens + "
          f"{DEFAULT_OUTPUT_TOKENS} output tokens")  # fmt: skip
    t = time.perf_counter()
    embedder = CachedEmbedder(MiniLMEmbedder(threads=None), args.cache_dir)
    embeddings = embedder.embed(pool.prompts)
    contexts = embeddings.astype(np.float64)
    print(f"embeddings: {time.perf_counter() - t:.1f} s (cache: {embedder.dir})")
    t = time.perf_counter()
    predicted = offline_predictions(pool, embeddings)
    print(f"offline router ({BEST_KIND}, cross-fitted): {time.perf_counter() - t:.1f} s")

    runs: dict[float, dict[str, dict[str, FloatArray]]] = {}
    for lam in lams:
        streams = []
        for seed in range(args.seeds):
            rows = np.random.default_rng(1000 + seed).integers(0, len(pool.prompts), args.requests)
            streams.append((rows, run_stream(pool, contexts, predicted, lam, rows, seed)))
        runs[lam] = summarise(pool, lam, streams, args.window)
        print(f"\n== λ = {lam:g}: {args.seeds} stream(s) of {args.requests} requests, "
              "mean over streams ==")  # fmt: skip
        print_tables(runs[lam], cps, args.window)
        print_verdict(runs[lam], args.window)
    if args.plot:
        plot(args.plot, runs, args.window)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
