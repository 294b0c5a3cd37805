"""Routing quality on prompts the router never saw: honest held-out protocols on LLMRouter's data.

The product is judged on routing data kept outside the project (train on one half, predict
the other). These protocols measure the same things on the data we may use
(``../shared/data/llmrouter``: 14 tasks, 9 models, prices), so that a change is measured
before it ships and never tuned on a test split:

(a) **shipped**: train on LLMRouter's train split, test on its test split, both
    de-duplicated by text and the test rows that also occur in train removed (381 prompts).
(b) **tasks**: the tasks are dealt into ``--task-folds`` folds (14 = leave each task out);
    each fold's prompts (train and test splits pooled, de-duplicated) are predicted by a
    router trained on the other folds' prompts only, and all out-of-task predictions are
    scored together. The hardest protocol: a task's wording is never seen in training.
(c) **pairs**: RouteLLM's two-model protocol. For a task (``mmlu``, ``gsm8k``) and for the
    whole pool, a strong model against a cheap one (``llama-3.1-nemotron-51b-instruct``, the
    best single model, against ``mistral-7b-instruct-v0.3``, as GPT-4 against Mixtral), the
    prompts split 50/50 by seed: train on one half, APGR (area under the performance gap
    recovered as the share of strong calls runs 0…1) on the other; mean ± sd over seeds.
    A tf-idf + logistic-regression reference (scikit-learn) runs on the same splits.
(d) **cost98**, in (a) and (b): the cost, as a fraction of the strongest single model's, of
    the router's cheapest operating point that keeps 98% of that model's quality (costs: the
    prices in ``default_llm.json`` × MiniLM token counts + 256 answer tokens).

Each ``--kinds`` router (any learned kind; ``ens`` = the mean of knn's and mlp's
predictions) is run with each ``--embeddings`` choice; every figure comes from the product's
own code (``RoutingDataset``, the routers' ``fit`` / ``predict_embeddings``, ``evaluate``), as
``polyroute train`` then ``polyroute eval --predictions`` would compute it.

``--tune`` does what chose ``minilm-lexical``'s weight: 5-fold grouped cross-validation on
LLMRouter's *train* split only, over a grid of lexical weights, scoring AIQ, cost98 and the
pair APGR of mmlu and gsm8k on the out-of-fold predictions.

Usage::

    python benchmarks/heldout_routing.py                       # all protocols (~15 min, 2 cores)
    python benchmarks/heldout_routing.py --protocols pairs --seeds 5
    python benchmarks/heldout_routing.py --tune --kinds mlp,knn
    python benchmarks/heldout_routing.py --kinds 'mf:{"wide_bits":0};mf'   # options per kind
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute.embeddings.base import Embedder  # noqa: E402
from polyroute.embeddings.lexical import (  # noqa: E402
    CHAR_BUCKETS,
    WORD_BUCKETS,
    LexicalEmbedder,
    combine,
)
from polyroute.embeddings.registry import DEFAULT_EMBEDDING, get_embedder  # noqa: E402
from polyroute.routing.registry import ROUTERS  # noqa: E402
from polyroute.routing.routers.learned import LearnedRouter  # noqa: E402
from polyroute.routing.tradeoff import FloatArray  # noqa: E402
from polyroute.routing_eval import metrics  # noqa: E402
from polyroute.routing_eval.costs import fill_missing_costs, load_prices  # noqa: E402
from polyroute.routing_eval.dataset import RoutingDataset, prompt_key  # noqa: E402
from polyroute.routing_eval.evaluate import evaluate  # noqa: E402
from polyroute.routing_eval.importers import load_llmrouter  # noqa: E402
from polyroute.routing_eval.train import learned_kinds, out_of_fold  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "llmrouter" / "data"
STRONG = "llama-3.1-nemotron-51b-instruct"
WEAK = "mistral-7b-instruct-v0.3"
PAIR_TASKS = ("mmlu", "gsm8k", "all")
KEEP = 0.98
PROTOCOLS = ("shipped", "tasks", "pairs")

Rows = list[tuple[str, dict[str, float]]]


@dataclass(frozen=True)
class Data:
    train: RoutingDataset
    test: RoutingDataset
    #: train ∪ test, de-duplicated: the pool the task-fold and pair protocols split.
    pool: RoutingDataset


def load_data(root: Path) -> Data:
    prices = load_prices(root / "example_data" / "llm_candidates" / "default_llm.json")
    split = root / "dcrouter_preprocessed"
    train = load_llmrouter(split / "train.json").dedupe()
    test = load_llmrouter(split / "test.json").dedupe().without_prompts_in(train)
    # The two files list the models in different orders: align the columns by name.
    test = test.subset_models(train.models)
    train, _ = fill_missing_costs(train, prices)
    test, _ = fill_missing_costs(test, prices)
    pool = RoutingDataset(
        ids=train.ids + test.ids,
        prompts=train.prompts + test.prompts,
        models=train.models,
        scores=np.concatenate([train.scores, test.scores]),
        costs=np.concatenate([_costs(train), _costs(test)]),
        tasks=train.tasks + test.tasks,
    )
    return Data(train, test, pool)


def _costs(ds: RoutingDataset) -> FloatArray:
    assert ds.costs is not None
    return ds.costs


class Vectors:
    """Every pool prompt embedded once per embedding (by text), looked up per protocol."""

    def __init__(self, pool: RoutingDataset, buckets: tuple[int, int] | None = None) -> None:
        self._texts = pool.prompts
        self._buckets = buckets
        self._row = {prompt_key(t): i for i, t in enumerate(pool.prompts)}
        self._done: dict[str, Any] = {}
        self._blocks: tuple[Any, Any, Any] | None = None

    def of(self, embedding: str, prompts: Sequence[str]) -> Any:
        if embedding not in self._done:
            self._done[embedding] = get_embedder(embedding).embed(self._texts)
        return self._done[embedding][[self._row[prompt_key(p)] for p in prompts]]

    def lexical(self, weight: float, prompts: Sequence[str]) -> Any:
        """``minilm-lexical`` vectors at another weight (for tuning): same blocks, recombined."""
        if self._blocks is None:
            n_words, n_chars = self._buckets or (WORD_BUCKETS, CHAR_BUCKETS)
            embedder = LexicalEmbedder(word_buckets=n_words, char_buckets=n_chars)
            self._blocks = embedder.blocks(self._texts)
        rows = [self._row[prompt_key(p)] for p in prompts]
        static, words, chars = (b[rows] for b in self._blocks)
        return combine(static, words, chars, weight)


def build(kind: str, embedder: Embedder | None = None, seed: int = 0) -> LearnedRouter:
    """A router of ``kind``, or of ``KIND:JSON`` (constructor options, e.g.
    ``mf:{"wide_bits":0}``)."""
    name, _, options = kind.partition(":")
    cls = ROUTERS.get(name)
    assert isinstance(cls, type) and issubclass(cls, LearnedRouter)
    takes_seed = "seed" in inspect.signature(cls).parameters
    params = ({"seed": seed} if takes_seed else {}) | (json.loads(options) if options else {})
    return cls(name, embedder=embedder, **params)


def fit_predict(
    kinds: Sequence[str],
    x_train: Any,
    train: RoutingDataset,
    x_test: Any,
    test_texts: Sequence[str],
    seed: int = 0,
) -> dict[str, FloatArray]:
    """Predictions of each kind on ``x_test``; ``ens`` is the mean of knn's and mlp's."""
    base = [k for k in kinds if k != "ens"]
    if "ens" in kinds:
        base += [k for k in ("knn", "mlp") if k not in base]
    out: dict[str, FloatArray] = {}
    for kind in base:
        router = build(kind, seed=seed)
        router.fit(x_train, train.scores, train.models, train.prompts, train.tasks)
        out[kind] = router.predict_embeddings(x_test, test_texts)
    if "ens" in kinds:
        out["ens"] = (out["knn"] + out["mlp"]) / 2
    return {k: out[k] for k in kinds}


def summary(test: RoutingDataset, predicted: FloatArray) -> dict[str, float]:
    """AIQ, quality at λ = 0 and at the best model's cost, and cost98 (see the module doc)."""
    report = evaluate(test, predicted)
    r, best = report["router"], report["best_model"]
    curve = metrics.router_curve(test.scores, _costs(test), predicted)
    cost98 = metrics.cost_to_reach(curve, KEEP * best["quality"])
    return {
        "aiq": r["aiq"],
        "quality": r["quality"],
        "q@best_cost": r["quality_at_best_model_cost"] or float("nan"),
        "cost98": float("nan") if cost98 is None else cost98 / best["cost"],
        "oracle": report["oracle"]["quality"],
        "best": best["quality"],
    }


def apgr(test: RoutingDataset, predicted: FloatArray) -> float:
    strong = list(test.models).index(STRONG)
    value = metrics.two_model_metrics(test.scores, predicted, strong).apgr
    return float("nan") if value is None else value


def pair_subset(ds: RoutingDataset, task: str) -> RoutingDataset:
    rows = [i for i, t in enumerate(ds.tasks) if task == "all" or t == task]
    return ds.take(rows).subset_models([STRONG, WEAK])


def tfidf_lr(train: RoutingDataset, test: RoutingDataset) -> FloatArray:
    """The reference: word 1-2-gram tf-idf, one logistic regression per model (solved?)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    xtr, xte = vec.fit_transform(train.prompts), vec.transform(test.prompts)
    out = np.empty((len(test), len(train.models)))
    for j in range(len(train.models)):
        y = train.scores[:, j] >= 0.5
        if y.all() or not y.any():
            out[:, j] = float(y.mean())
            continue
        out[:, j] = LogisticRegression(C=1.0, max_iter=1000).fit(xtr, y).predict_proba(xte)[:, 1]
    return out


# -- the protocols --------------------------------------------------------------------------


def shipped(data: Data, vectors: Vectors, kinds: Sequence[str], embeddings: Sequence[str]) -> Rows:
    rows: Rows = []
    for emb in embeddings:
        xtr, xte = vectors.of(emb, data.train.prompts), vectors.of(emb, data.test.prompts)
        for kind, p in fit_predict(kinds, xtr, data.train, xte, data.test.prompts).items():
            rows.append((f"{kind} / {emb}", summary(data.test, p)))
    return rows


def task_folds(
    data: Data, vectors: Vectors, kinds: Sequence[str], embeddings: Sequence[str], folds: int
) -> Rows:
    pool = data.pool
    tasks = sorted({t or "" for t in pool.tasks})
    fold_of = {t: i % folds for i, t in enumerate(tasks)}
    fold = np.array([fold_of[t or ""] for t in pool.tasks])
    rows: Rows = []
    for emb in embeddings:
        x = vectors.of(emb, pool.prompts)
        predicted = {k: np.empty(pool.scores.shape) for k in kinds}
        for f in range(folds):
            held = fold == f
            train = pool.take(np.flatnonzero(~held))
            held_texts = [pool.prompts[i] for i in np.flatnonzero(held)]
            for kind, p in fit_predict(kinds, x[~held], train, x[held], held_texts).items():
                predicted[kind][held] = p
        for kind in kinds:
            rows.append((f"{kind} / {emb}", summary(pool, predicted[kind])))
    return rows


def pairs(
    data: Data, vectors: Vectors, kinds: Sequence[str], embeddings: Sequence[str], seeds: int
) -> Rows:
    rows: Rows = []
    for task in PAIR_TASKS:
        subset = pair_subset(data.pool, task)
        found: dict[str, list[float]] = {}
        for seed in range(seeds):
            train, test = subset.split(0.5, seed=seed)
            for emb in embeddings:
                xtr, xte = vectors.of(emb, train.prompts), vectors.of(emb, test.prompts)
                for kind, p in fit_predict(kinds, xtr, train, xte, test.prompts, seed=seed).items():
                    found.setdefault(f"{kind} / {emb}", []).append(apgr(test, p))
            found.setdefault("tf-idf + logistic regression", []).append(
                apgr(test, tfidf_lr(train, test))
            )
        for label, values in found.items():
            rows.append(
                (
                    f"{task}: {label}",
                    {"apgr": float(np.mean(values)), "sd": float(np.std(values)), "n": len(subset)},
                )
            )
    return rows


def tune(data: Data, vectors: Vectors, kinds: Sequence[str], weights: Sequence[float]) -> Rows:
    """5-fold grouped CV on the train split only, per lexical weight (0 = minilm-static)."""
    train = data.train
    rows: Rows = []
    pair_rows = {t: [i for i, x in enumerate(train.tasks) if x == t] for t in ("mmlu", "gsm8k")}
    cols = [train.models.index(STRONG), train.models.index(WEAK)]
    for weight in weights:
        x = vectors.lexical(weight, train.prompts)
        oof: dict[str, FloatArray] = {}
        base = [k for k in kinds if k != "ens"]
        if "ens" in kinds:
            base += [k for k in ("knn", "mlp") if k not in base]
        for kind in base:
            oof[kind] = out_of_fold(lambda k=kind: build(k), x, train, folds=5)  # type: ignore[misc]
        if "ens" in kinds:
            oof["ens"] = (oof["knn"] + oof["mlp"]) / 2
        for kind in kinds:
            row = summary(train, oof[kind])
            for task, idx in pair_rows.items():
                sub = train.take(idx).subset_models([STRONG, WEAK])
                row[f"apgr {task}"] = apgr(sub, oof[kind][idx][:, cols])
            rows.append((f"{kind} / weight {weight:g}", row))
        print(f"  weight {weight:g} done", file=sys.stderr, flush=True)
    return rows


def show(title: str, rows: Rows) -> None:
    print(f"\n## {title}")
    if not rows:
        return
    keys = list(rows[0][1])
    width = max(len(label) for label, _ in rows)
    print(f"{'':{width}}  " + "  ".join(f"{k:>11}" for k in keys))
    for label, values in rows:
        cells = [
            f"{values[k]:11d}" if isinstance(values[k], int) else f"{values[k]:11.4f}" for k in keys
        ]
        print(f"{label:{width}}  " + "  ".join(cells))
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA, help="LLMRouter's data/ directory")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument(
        "--kinds", default="knn,mlp,ens", help='comma-separated; ";"-separated for KIND:JSON'
    )
    parser.add_argument("--embeddings", default="minilm-static,minilm-lexical")
    parser.add_argument("--task-folds", type=int, default=7, help="14 = leave each task out")
    parser.add_argument("--seeds", type=int, default=3, help="50/50 splits per pair protocol")
    parser.add_argument("--tune", action="store_true", help="CV on train for the lexical weight")
    parser.add_argument("--weights", default="0,0.3,0.5,0.65,0.8,0.9")
    parser.add_argument(
        "--buckets",
        default=f"{WORD_BUCKETS},{CHAR_BUCKETS}",
        help="word,char hash buckets for --tune",
    )
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(";" if ";" in args.kinds else ",") if k]
    embeddings = [e for e in args.embeddings.split(",") if e]
    unknown = {k.partition(":")[0] for k in kinds} - {*learned_kinds(), "ens"}
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    if not (args.data / "dcrouter_preprocessed" / "train.json").is_file():
        parser.error(f"{args.data} is not LLMRouter's data/ directory")

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; default embedding {DEFAULT_EMBEDDING}"
    )
    started = time.perf_counter()
    data = load_data(args.data)
    words, chars = (int(b) for b in args.buckets.split(","))
    vectors = Vectors(data.pool, (words, chars))
    print(f"train {len(data.train)}, test {len(data.test)}, pool {len(data.pool)} prompts")
    if args.tune:
        weights = [float(w) for w in args.weights.split(",")]
        show("tune: 5-fold CV on the train split", tune(data, vectors, kinds, weights))
    protocols = [] if args.tune else [p for p in args.protocols.split(",") if p]
    runs: dict[str, Callable[[], Rows]] = {
        "shipped": lambda: shipped(data, vectors, kinds, embeddings),
        "tasks": lambda: task_folds(data, vectors, kinds, embeddings, args.task_folds),
        "pairs": lambda: pairs(data, vectors, kinds, embeddings, args.seeds),
    }
    titles = {
        "shipped": f"(a) shipped train → test ({len(data.test)} prompts), (d) cost98",
        "tasks": f"(b) by task: {args.task_folds} task folds over {len(data.pool)} prompts",
        "pairs": f"(c) pairs {STRONG} vs {WEAK}, 50/50 × {args.seeds} seeds: APGR",
    }
    for name in protocols:
        if name not in runs:
            parser.error(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
        t = time.perf_counter()
        show(titles[name], runs[name]())
        print(f"({time.perf_counter() - t:.0f} s)")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print(
        "reproduce: " + shlex.join([sys.executable, "benchmarks/heldout_routing.py", *sys.argv[1:]])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
