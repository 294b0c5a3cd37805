"""Does the mf router's setting matter, and does the best one depend on the data (issue #10)?

``polyroute train`` builds ``mf`` with options tuned once on LLMRouter's data (5.6k prompts,
9 models); the judge trains it on other data (2 models and 650 or 7k prompts; 11 models and
~18k). This measures a small grid of mf settings (and knn) on the data we may use, never on a
test split for choosing:

- **cv9**: 5-fold grouped out-of-fold (OOF) predictions on LLMRouter's train split (5,608
  prompts, 9 models): masked log-loss, AIQ, quality at the best model's cost, cost98.
- **cv2**: the same prompts, only the pair of ``heldout_routing.py`` (nemotron-51b against
  mistral-7b): log-loss and APGR of the OOF predictions. 2-model data, as the judge's MMLU
  and GSM8K.
- **sub600 / sub2000** (and ``pair``): the same on a seeded sample of 600 / 2,000 train
  prompts: how the best setting moves with data size.
- **pairs_TASK**: protocol (c) of ``heldout_routing.py`` (50/50 splits of the pool, 3
  seeds): APGR and log-loss on the held-out half, and (``all`` only) the OOF log-loss / APGR
  on the training half, to see whether a choice made on the training half (what
  ``polyroute train`` could do) picks what the held-out half prefers.
- **noise**: cv9 and cv2 again with fold and training seeds 1 and 2: the seed noise any
  difference must beat.

Usage (each stage appends to ``--out``, and a rerun skips what is there)::

    python benchmarks/mf_settings.py                      # all stages (~40 min, 2 busy cores)
    python benchmarks/mf_settings.py --stages cv9,noise --configs default,wd1e-3
    python benchmarks/mf_settings.py --report             # the tables from --out
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_routing as H

from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.learned import LearnedRouter
from polyroute.routing.tradeoff import FloatArray
from polyroute.routing_eval.dataset import RoutingDataset
from polyroute.routing_eval.train import out_of_fold

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("mf", {}),
    "wd1e-3": ("mf", {"weight_decay": 1e-3}),
    "wd1e-2": ("mf", {"weight_decay": 1e-2}),
    "wd1e-5": ("mf", {"weight_decay": 1e-5}),
    "wd0": ("mf", {"weight_decay": 0.0}),
    "h64": ("mf", {"hidden": 64}),
    "h256": ("mf", {"hidden": 256}),
    "h256wd1e-5": ("mf", {"hidden": 256, "weight_decay": 1e-5}),
    "d8": ("mf", {"dim": 8}),
    "knn": ("knn", {}),
    "wb14": ("mf", {"wide_bits": 14}),
    "wb18": ("mf", {"wide_bits": 18}),
}
STAGES = ("cv9", "pairs", "cv2", "sub", "noise")
PAIR = [H.STRONG, H.WEAK]


def masked_log_loss(scores: FloatArray, predicted: FloatArray) -> float:
    """Mean binary cross-entropy against the known scores (NaN = unknown), fractions as they are."""
    known = np.isfinite(scores)
    y, p = scores[known], np.clip(predicted[known], 1e-6, 1 - 1e-6)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def build(config: str, seed: int) -> LearnedRouter:
    kind, params = CONFIGS[config]
    cls = ROUTERS.get(kind)
    assert isinstance(cls, type) and issubclass(cls, LearnedRouter)
    options: dict[str, Any] = {**params, **({"seed": seed} if kind == "mf" else {})}
    return cls(kind, **options)


class Runner:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.data = H.load_data(H.DATA)
        self.vectors = H.Vectors(self.data.pool)
        self.done = {(r["stage"], r["config"], r["seed"]) for r in read(out)}

    def x(self, ds: RoutingDataset) -> Any:
        return self.vectors.of("minilm-lexical", ds.prompts)

    def emit(self, row: Mapping[str, Any]) -> None:
        with self.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def cv(self, stage: str, ds: RoutingDataset, config: str, seed: int = 0) -> None:
        if (stage, config, seed) in self.done:
            return
        t = time.perf_counter()
        p = out_of_fold(lambda: build(config, seed), self.x(ds), ds, folds=5, seed=seed)
        row: dict[str, Any] = dict(stage=stage, config=config, seed=seed, n=len(ds))
        row["log_loss"] = masked_log_loss(ds.scores, p)
        if len(ds.models) == 2:
            row["apgr"] = H.apgr(ds, p)
        else:
            s = H.summary(ds, p)
            row.update(aiq=s["aiq"], q_at_best_cost=s["q@best_cost"], cost98=s["cost98"])
        row["seconds"] = round(time.perf_counter() - t, 1)
        self.emit(row)

    def pairs(self, config: str) -> None:
        for task in H.PAIR_TASKS:
            subset = H.pair_subset(self.data.pool, task)
            for seed in range(3):
                if (f"pairs_{task}", config, seed) in self.done:
                    continue
                t = time.perf_counter()
                train, test = subset.split(0.5, seed=seed)
                router = build(config, seed)
                router.fit(self.x(train), train.scores, train.models, train.prompts)
                p = router.predict_embeddings(self.x(test), test.prompts)
                row: dict[str, Any] = dict(stage=f"pairs_{task}", config=config, seed=seed)
                row.update(n=len(train), apgr=H.apgr(test, p))
                row["log_loss"] = masked_log_loss(test.scores, p)
                if task == "all":
                    again = functools.partial(build, config, seed)
                    po = out_of_fold(again, self.x(train), train, folds=5, seed=seed)
                    row["oof_log_loss"] = masked_log_loss(train.scores, po)
                    row["oof_apgr"] = H.apgr(train, po)
                row["seconds"] = round(time.perf_counter() - t, 1)
                self.emit(row)

    def run(self, stage: str, config: str) -> None:
        train = self.data.train
        if stage == "cv9":
            self.cv("cv9", train, config)
        elif stage == "cv2":
            self.cv("cv2", train.subset_models(PAIR), config)
        elif stage == "sub":
            for n in (600, 2000):
                rows = np.sort(np.random.default_rng(n).choice(len(train), n, replace=False))
                for seed in (0, 1, 2):
                    self.cv(f"sub{n}", train.take(rows), config, seed)
                    self.cv(f"sub{n}pair", train.take(rows).subset_models(PAIR), config, seed)
        elif stage == "pairs":
            self.pairs(config)
        elif stage == "noise":
            for seed in (1, 2):
                self.cv("cv9", train, config, seed)
                self.cv("cv2", train.subset_models(PAIR), config, seed)
        else:
            raise SystemExit(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(rows: list[dict[str, Any]]) -> None:
    """Per stage and config: the mean (± sd over seeds) of every figure."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[r["stage"]][r["config"]].append(r)
    for stage, configs in groups.items():
        print(f"\n## {stage}")
        for config, rs in configs.items():
            keys = [k for k in rs[0] if k not in ("stage", "config", "seed", "n", "seconds")]
            cells = []
            for k in keys:
                v: FloatArray = np.array([r[k] for r in rs if r.get(k) is not None], dtype=float)
                sd = f" ± {v.std():.4f}" if len(v) > 1 else ""
                cells.append(f"{k} {v.mean():.4f}{sd}")
            print(f"  {config:11} n={rs[0]['n']:<5} seeds={len(rs)}  " + ", ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path("mf_settings.jsonl"))
    parser.add_argument("--report", action="store_true", help="only print the tables")
    args = parser.parse_args()
    if not args.report:
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
        runner = Runner(args.out)
        for stage in [s for s in args.stages.split(",") if s]:
            for config in [c for c in args.configs.split(",") if c]:
                if config not in CONFIGS:
                    parser.error(f"unknown config {config!r}")
                runner.run(stage, config)
    report(read(args.out))
    print(
        "\nreproduce: " + shlex.join([sys.executable, "benchmarks/mf_settings.py", *sys.argv[1:]])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
