"""Does a sparse linear model over a large vocabulary add to ``mf``? A stacking check.

Hypothesis (issue #10): the 512 + 512 hashed buckets of ``minilm-lexical``, read through mf's
128-unit ReLU layer, lose lexical signal that a sparse linear model over a full vocabulary
(tf-idf + logistic regression, the judge's 0.683 MMLU baseline) keeps. The check, before
building anything into the product: per model, combine mf's logit with a sparse logistic
regression's logit by a per-model 2-weight (+ bias) logistic regression fitted on
**out-of-fold predictions on the training side only**, and score all three on the held-out
protocols of ``benchmarks/heldout_routing.py`` (same data, splits and metrics):

- **mf**: the product's default router (``minilm-lexical``, default options);
- **sparse**: per model, a logistic regression (C = ``--C``) on word 1-2-gram + char_wb
  3-5-gram tf-idf (IDF fitted on the training side; ``--sparse hashed``: 2^18 hashed
  buckets each, sublinear tf, no IDF; ``--sparse embedding``: the ``minilm-lexical``
  vector itself, i.e. what a linear skip over mf's own input could learn), fractional
  scores as sample weights;
- **avg**: σ(mean of the two logits), no fitted weights;
- **stack**: σ(a_j · logit_mf + b_j · logit_sparse + c_j), (a_j, b_j, c_j) per model by
  logistic regression on ``--inner-folds``-fold out-of-fold predictions of the train side.

Protocols: (a) shipped, (b) task folds, (c) pairs (the 2-model nemotron-51b / mistral-7b
protocol on mmlu, gsm8k, all; plus ``pairs36``: a 9-model router on the same 50/50 splits,
APGR averaged over all 36 model pairs, less noisy than one pair), and ``cv``: 5-fold grouped
CV on LLMRouter's train split (the stack's weights cross-fitted over the same folds).

Usage::

    python benchmarks/wide_stacking.py --protocols cv
    python benchmarks/wide_stacking.py --protocols shipped,pairs,pairs36 --seeds 3
    python benchmarks/wide_stacking.py --protocols cv --sparse embedding \
        --wide-bits 16 --wide-decay 1e-5

``--wide-bits N`` runs mf with its wide term over hashed word/char n-grams of the text at
2^N buckets each and L2 ``--wide-decay`` (:func:`wide_mf_predictor`; ``--wide-bits 0``: mf
as it was before 2026-12-02). Figures: docs/routers.md, "A wide lexical part?". That
experiment (then code of its own here) is now the product's default (``MFRouter``'s
``wide_bits=16``), so since 2026-12-02 **mf** here *is* the wide mf; the figures in the docs
for "mf (default)" were measured before, i.e. with ``wide_bits=0``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heldout_routing as h

from polyroute.routing.routers.mf import MFRouter
from polyroute.routing.routers.mf_newcomer import fit_vector
from polyroute.routing.tradeoff import FloatArray
from polyroute.routing_eval import metrics
from polyroute.routing_eval.dataset import RoutingDataset, prompt_key

EMBEDDING = "minilm-lexical"
#: (train, test) → predicted quality on test (n_test, models).
Predictor = Callable[[RoutingDataset, RoutingDataset], FloatArray]


def mf_predictor(vectors: h.Vectors, seed: int) -> Predictor:
    def run(train: RoutingDataset, test: RoutingDataset) -> FloatArray:
        router = MFRouter("mf", seed=seed)
        router.fit(vectors.of(EMBEDDING, train.prompts), train.scores, train.models, train.prompts)
        return router.predict_embeddings(vectors.of(EMBEDDING, test.prompts), test.prompts)

    return run


def wide_mf_predictor(vectors: h.Vectors, seed: int, bits: int, wide_decay: float) -> Predictor:
    """mf with its wide term at ``bits`` (2^bits buckets each of word 1-2-grams and char_wb
    3-5-grams) and L2 ``wide_decay``: the experiment that became ``MFRouter``'s default
    (``wide_bits=16, wide_decay=1e-5``), now run through the product's own class."""

    def run(train: RoutingDataset, test: RoutingDataset) -> FloatArray:
        router = MFRouter("mf", seed=seed, wide_bits=bits, wide_decay=wide_decay)
        router.fit(vectors.of(EMBEDDING, train.prompts), train.scores, train.models, train.prompts)
        return router.predict_embeddings(vectors.of(EMBEDDING, test.prompts), test.prompts)

    return run


def sparse_matrices(
    train: list[str], test: list[str], kind: str, bits: int = 18
) -> tuple[Any, Any]:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.preprocessing import normalize

    if kind == "tfidf":
        blocks = [
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2),
        ]
        fitted = [b.fit(train) for b in blocks]
        tr = [b.transform(train) for b in fitted]
        te = [b.transform(test) for b in fitted]
    else:
        blocks_h = [
            HashingVectorizer(
                n_features=2**bits, ngram_range=(1, 2), alternate_sign=False, norm=None
            ),
            HashingVectorizer(
                n_features=2**bits,
                analyzer="char_wb",
                ngram_range=(3, 5),
                alternate_sign=False,
                norm=None,
            ),
        ]

        def sub(m: object) -> object:
            m = m.tocsr()  # type: ignore[attr-defined]
            m.data = 1.0 + np.log(m.data)
            return normalize(m)

        tr = [sub(b.transform(train)) for b in blocks_h]
        te = [sub(b.transform(test)) for b in blocks_h]
    scale = 1.0 / math.sqrt(2.0)
    return hstack(tr).tocsr() * scale, hstack(te).tocsr() * scale


def sparse_predictor(kind: str, c: float, vectors: h.Vectors) -> Predictor:
    def run(train: RoutingDataset, test: RoutingDataset) -> FloatArray:
        from scipy.sparse import csr_matrix, vstack
        from sklearn.linear_model import LogisticRegression

        if kind == "embedding":  # what a linear skip over mf's own input could learn
            xtr = csr_matrix(vectors.of(EMBEDDING, train.prompts))
            xte = csr_matrix(vectors.of(EMBEDDING, test.prompts))
        else:
            xtr, xte = sparse_matrices(train.prompts, test.prompts, kind)
        out = np.empty((len(test), len(train.models)))
        for j in range(len(train.models)):
            y = train.scores[:, j]
            known = np.flatnonzero(np.isfinite(y))
            yk = y[known]
            if yk.min() == yk.max():
                out[:, j] = float(yk.mean())
                continue
            xk = xtr[known]  # type: ignore[index]
            lr = LogisticRegression(C=c, max_iter=2000)
            lr.fit(
                vstack([xk, xk]),
                np.r_[np.ones(len(yk)), np.zeros(len(yk))],
                sample_weight=np.r_[yk, 1 - yk] + 1e-9,
            )
            out[:, j] = lr.predict_proba(xte)[:, 1]
        return out

    return run


def fold_of(ds: RoutingDataset, folds: int, seed: int) -> np.ndarray:
    """Grouped folds (rows sharing a text stay together), as ``out_of_fold`` deals them."""
    groups: dict[str, int] = {}
    group = np.array([groups.setdefault(prompt_key(p), len(groups)) for p in ds.prompts])
    return np.random.default_rng(seed).permutation(len(groups))[group] % folds


def out_of_fold(predict: Predictor, ds: RoutingDataset, fold: np.ndarray) -> FloatArray:
    out = np.empty(ds.scores.shape)
    for f in np.unique(fold):
        held = fold == f
        out[held] = predict(ds.take(np.flatnonzero(~held)), ds.take(np.flatnonzero(held)))
    return out


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def stack_weights(parts: list[FloatArray], y: FloatArray) -> list[FloatArray]:
    """Per model, [weights..., bias] of σ(Σ w_i logit_i + b) fitted to ``y`` (NaN = unknown)."""
    rows = []
    for j in range(y.shape[1]):
        known = np.isfinite(y[:, j])
        z = np.column_stack([_logit(p[known, j]) for p in parts])
        k = z.shape[1] + 1
        mean = np.r_[np.full(k - 1, 1.0 / (k - 1)), 0.0]
        rows.append(fit_vector(z, y[known, j], mean, 1e-3 * np.eye(k)))
    return rows


def stack_apply(weights: list[FloatArray], parts: list[FloatArray]) -> FloatArray:
    out = np.empty(parts[0].shape)
    for j, w in enumerate(weights):
        t = sum(w[i] * _logit(p[:, j]) for i, p in enumerate(parts)) + w[-1]
        out[:, j] = 1.0 / (1.0 + np.exp(-t))
    return out


def average(parts: list[FloatArray]) -> FloatArray:
    t = sum(_logit(p) for p in parts) / len(parts)
    return np.asarray(1.0 / (1.0 + np.exp(-t)))


def stacked(
    predictors: dict[str, Predictor],
    train: RoutingDataset,
    test: RoutingDataset,
    inner_folds: int,
    seed: int,
) -> dict[str, FloatArray]:
    """Each predictor's test predictions, their average and their stack (OOF-fitted)."""
    out = {name: p(train, test) for name, p in predictors.items()}
    parts = [out[name] for name in predictors]
    out["avg"] = average(parts)
    if inner_folds < 2:  # no stack: the same as avg, so that the tables keep their rows
        out["stack"] = out["avg"]
        return out
    fold = fold_of(train, inner_folds, seed)
    oof = [out_of_fold(p, train, fold) for p in predictors.values()]
    out["stack"] = stack_apply(stack_weights(oof, train.scores), parts)
    w = np.array(stack_weights(oof, train.scores))
    print(f"    stack weights (mean over models): {np.round(w.mean(axis=0), 2)}", file=sys.stderr)
    return out


def train_cv(
    predictors: dict[str, Predictor], train: RoutingDataset, seed: int
) -> dict[str, FloatArray]:
    """5-fold grouped OOF predictions on ``train``; the stack cross-fitted over the folds."""
    fold = fold_of(train, 5, seed)
    oof = {name: out_of_fold(p, train, fold) for name, p in predictors.items()}
    parts = list(oof.values())
    oof["avg"] = average(parts)
    stack = np.empty(train.scores.shape)
    for f in np.unique(fold):
        held = fold == f
        w = stack_weights([p[~held] for p in parts], train.scores[~held])
        stack[held] = stack_apply(w, [p[held] for p in parts])
    oof["stack"] = stack
    return oof


def mean_pair_apgr(test: RoutingDataset, predicted: FloatArray) -> float:
    """APGR over all model pairs, weighted by each pair's quality gap: a pair whose two
    models are nearly level has a tiny denominator and an APGR that is mostly noise (it
    can pass 1), so the mean is Σ gap · APGR / Σ gap (the share of the summed gaps recovered)."""
    values, gaps = [], []
    for a, b in itertools.combinations(range(len(test.models)), 2):
        m = metrics.two_model_metrics(test.scores[:, [a, b]], predicted[:, [a, b]])
        if m.apgr is not None:
            values.append(m.apgr)
            gaps.append(abs(m.q_strong - m.q_weak))
    return float(np.average(values, weights=gaps))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocols", default="cv,shipped,pairs,pairs36,tasks")
    parser.add_argument("--sparse", choices=("tfidf", "hashed", "embedding"), default="tfidf")
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument(
        "--wide-bits",
        type=int,
        default=None,
        help="mf's wide term at 2^bits buckets each (0: none) [default: mf's own default]",
    )
    parser.add_argument("--wide-decay", type=float, default=1e-5, help="the wide term's L2")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--inner-folds", type=int, default=3, help="0: no stack")
    parser.add_argument("--task-folds", type=int, default=7)
    parser.add_argument("--pair-tasks", default=",".join(h.PAIR_TASKS))
    args = parser.parse_args()
    print(
        f"load average {os.getloadavg()[0]:.2f}; sparse {args.sparse} C {args.C}; "
        f"wide bits {args.wide_bits} decay {args.wide_decay}"
    )
    started = time.perf_counter()
    data = h.load_data(h.DATA)
    vectors = h.Vectors(data.pool)
    vectors.of(EMBEDDING, data.pool.prompts[:1])

    def predictors(seed: int) -> dict[str, Predictor]:
        return {
            "mf": (
                wide_mf_predictor(vectors, seed, args.wide_bits, args.wide_decay)
                if args.wide_bits is not None
                else mf_predictor(vectors, seed)
            ),
            "sparse": sparse_predictor(args.sparse, args.C, vectors),
        }

    names = ["mf", "sparse", "avg", "stack"]
    for protocol in [p for p in args.protocols.split(",") if p]:
        t = time.perf_counter()
        rows: h.Rows = []
        if protocol == "cv":
            train = data.train
            idx = {t: [i for i, x in enumerate(train.tasks) if x == t] for t in ("mmlu", "gsm8k")}
            cols = [train.models.index(h.STRONG), train.models.index(h.WEAK)]
            found: dict[str, list[dict[str, float]]] = {}
            for seed in range(args.seeds):
                oof = train_cv(predictors(seed), train, seed)
                for name in names:
                    row = h.summary(train, oof[name])
                    for task, rws in idx.items():
                        sub = train.take(rws).subset_models([h.STRONG, h.WEAK])
                        row[f"apgr {task}"] = h.apgr(sub, oof[name][rws][:, cols])
                        row[f"36p {task}"] = mean_pair_apgr(train.take(rws), oof[name][rws])
                    row["36p all"] = mean_pair_apgr(train, oof[name])
                    found.setdefault(name, []).append(row)
                print(f"  cv seed {seed} done", file=sys.stderr, flush=True)
            for name, rs in found.items():
                rows.append((name, {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}))
                rows.append(("  sd", {k: float(np.std([r[k] for r in rs])) for k in rs[0]}))
            h.show(f"train-CV, 5 folds, {args.seeds} seeds", rows)
        elif protocol == "shipped":
            out = stacked(predictors(0), data.train, data.test, args.inner_folds, 0)
            rows = [(name, h.summary(data.test, out[name])) for name in names]
            h.show("(a) shipped", rows)
        elif protocol == "tasks":
            pool = data.pool
            tasks = sorted({t or "" for t in pool.tasks})
            fold_task = {t: i % args.task_folds for i, t in enumerate(tasks)}
            fold = np.array([fold_task[t or ""] for t in pool.tasks])
            pred = {n: np.empty(pool.scores.shape) for n in names}
            for f in range(args.task_folds):
                held = fold == f
                out = stacked(
                    predictors(0),
                    pool.take(np.flatnonzero(~held)),
                    pool.take(np.flatnonzero(held)),
                    args.inner_folds,
                    0,
                )
                for n in names:
                    pred[n][held] = out[n]
                print(f"  task fold {f} done", file=sys.stderr, flush=True)
            rows = [(n, h.summary(pool, pred[n])) for n in names]
            h.show(f"(b) {args.task_folds} task folds", rows)
        elif protocol in ("pairs", "pairs36"):
            for task in args.pair_tasks.split(","):
                if protocol == "pairs":
                    subset = h.pair_subset(data.pool, task)
                else:
                    rws = [i for i, x in enumerate(data.pool.tasks) if task == "all" or x == task]
                    subset = data.pool.take(rws)
                found2: dict[str, list[float]] = {}
                for seed in range(args.seeds):
                    train, test = subset.split(0.5, seed=seed)
                    out = stacked(predictors(seed), train, test, args.inner_folds, seed)
                    for n in names:
                        value = (
                            h.apgr(test, out[n])
                            if protocol == "pairs"
                            else mean_pair_apgr(test, out[n])
                        )
                        found2.setdefault(n, []).append(value)
                    print(f"  {protocol} {task} seed {seed} done", file=sys.stderr, flush=True)
                for n, vals in found2.items():
                    rows.append(
                        (
                            f"{task}: {n}",
                            {
                                "apgr": float(np.mean(vals)),
                                "sd": float(np.std(vals)),
                                "n": len(subset),
                            },
                        )
                    )
            title = "2-model pair" if protocol == "pairs" else "9-model router, mean over 36 pairs"
            h.show(f"(c) {title}, 50/50 x {args.seeds} seeds: APGR", rows)
        else:
            parser.error(f"unknown protocol {protocol!r}")
        print(f"({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print("reproduce: " + shlex.join(["python", "benchmarks/wide_stacking.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
