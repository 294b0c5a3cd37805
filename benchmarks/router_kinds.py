"""Learned router kinds compared on LLMRouter's data: 5-fold cross-validation on train, and test.

For each kind (and seed): out-of-fold predictions on the 5,608 training prompts
(:func:`polyroute.routing_eval.train.out_of_fold`, same-text prompts in one fold), and a
router fitted on all of train predicting the de-duplicated test set (381 prompts); both
evaluated with :func:`polyroute.routing_eval.evaluate.evaluate`: AIQ, and quality at the best
single model's cost. Embedding: ``minilm-static`` (cached in the CLI's cache).

Usage::

    python benchmarks/router_kinds.py                          # mf and mlp, seeds 0 1 2
    python benchmarks/router_kinds.py --kinds mf:'{"dim": 8}' knn:'{"k": 40}' --seeds 0
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from onboarding import DATA, load  # noqa: E402

from polyroute.cli.routing import default_cache_dir  # noqa: E402
from polyroute.embeddings.base import CachedEmbedder  # noqa: E402
from polyroute.embeddings.registry import get_embedder  # noqa: E402
from polyroute.routing.registry import ROUTERS  # noqa: E402
from polyroute.routing.routers.learned import LearnedRouter  # noqa: E402
from polyroute.routing_eval.evaluate import evaluate  # noqa: E402
from polyroute.routing_eval.train import out_of_fold  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kinds", nargs="+", default=["mf", "mlp"], help="KIND[:JSON params]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print("$ python benchmarks/router_kinds.py " + shlex.join(sys.argv[1:]), flush=True)
    train, test = load(DATA)
    embedder = CachedEmbedder(get_embedder("minilm-static"), default_cache_dir())
    x_train, x_test = embedder.embed(train.prompts), embedder.embed(test.prompts)
    print(f"{'kind':24} {'seed':>4} {'CV AIQ':>7} {'CV q@best':>9} {'test AIQ':>8} "
          f"{'test q@best':>11} {'s':>5}")  # fmt: skip
    for spec in args.kinds:
        kind, _, text = spec.partition(":")
        params = json.loads(text) if text else {}
        rows = []
        for seed in args.seeds:
            cls = ROUTERS.get(kind)
            assert issubclass(cls, LearnedRouter)
            kwargs = params if kind == "knn" else {"seed": seed} | params

            def build(cls: type[LearnedRouter] = cls, kwargs: dict = kwargs) -> LearnedRouter:
                return cls(cls.kind, **kwargs)

            t0 = time.perf_counter()
            cv = evaluate(train, out_of_fold(build, x_train, train, folds=5, seed=0))["router"]
            router = build()
            router.fit(x_train, train.scores, train.models, train.prompts, train.tasks)
            te = evaluate(test, router.predict_embeddings(x_test, test.prompts))["router"]
            row = (cv["aiq"], cv["quality_at_best_model_cost"], te["aiq"],
                   te["quality_at_best_model_cost"])  # fmt: skip
            rows.append(row)
            print(f"{spec:24} {seed:4} {row[0]:7.4f} {row[1]:9.4f} {row[2]:8.4f} {row[3]:11.4f} "
                  f"{time.perf_counter() - t0:5.0f}", flush=True)  # fmt: skip
        mean = np.mean(rows, axis=0)
        print(f"{spec:24} {'mean':>4} {mean[0]:7.4f} {mean[1]:9.4f} {mean[2]:8.4f} {mean[3]:11.4f}")


if __name__ == "__main__":
    main()
