"""mf with and without task heads on LLMRouter's test split, over training seeds, with a paired
bootstrap of each variant's difference from no heads (docs/routers.md, "With task heads").

Trained on the train split (5,608 prompts), evaluated on the 381 de-duplicated test prompts
not in train, default mf on ``minilm-lexical``; the variants are no heads and heads at each
``--weights`` (``task_weight``: 1 = one-hot targets, 0.3 = 0.5 ± 0.15). Prints quality at the
best model's cost and AIQ per seed and variant, then, for the first seed, the mean and sd of
(variant − none) over bootstrap resamples of the test prompts and how often the variant comes
out ahead.

Usage::

    python benchmarks/task_heads.py                    # seeds 0 1 2, weights 1 and 0.3 (~7 min)
    python benchmarks/task_heads.py --seeds 0 --weights 0.3 --resamples 50
    python benchmarks/task_heads.py --weights 0.3 --split-tasks 4   # finer labels, below

``--split-tasks K`` deals each task's training prompts into K labels at random (by a hash of
the prompt): labels as many and as fine as a data set's sub-categories (RouterBench's
``eval_name`` names MMLU's 57 subjects), but meaningless, so the heads can only hurt: the
worst case of fine-grained task labels.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute.cli.routing import default_cache_dir  # noqa: E402
from polyroute.embeddings.base import CachedEmbedder  # noqa: E402
from polyroute.embeddings.registry import get_embedder  # noqa: E402
from polyroute.routing.routers.mf import MFRouter  # noqa: E402

_spec = importlib.util.spec_from_file_location("onboarding", ROOT / "benchmarks" / "onboarding.py")
assert _spec is not None and _spec.loader is not None
onboarding = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(onboarding)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.3])
    parser.add_argument("--split-tasks", type=int, default=1, metavar="K")
    args = parser.parse_args()
    started = time.perf_counter()
    train, test = onboarding.load(onboarding.DATA)
    embedder = CachedEmbedder(get_embedder("minilm-lexical"), default_cache_dir())
    x_train, x_test = embedder.embed(train.prompts), embedder.embed(test.prompts)
    pairs = zip(train.tasks, train.prompts, strict=True)
    tasks = [_split(t, p, args.split_tasks) for t, p in pairs]
    if args.split_tasks > 1:
        print(f"{len(set(tasks))} task labels ({args.split_tasks} random parts of each task)")
    variants: list[float | None] = [None, *args.weights]  # None: no heads
    first: dict[float | None, np.ndarray] = {}
    for seed in args.seeds:
        for weight in variants:
            heads = weight is not None
            router = MFRouter(seed=seed, task_heads=heads, task_weight=weight or 1.0)
            router.fit(x_train, train.scores, train.models, list(train.prompts), tasks)
            p = router.predict_embeddings(x_test, list(test.prompts))
            first.setdefault(weight, p)
            q, aiq, _ = onboarding.figures(test, p)
            print(f"seed {seed}, {_name(weight)}: quality at the best model's cost {q:.4f}, "
                  f"AIQ {aiq:.4f}", flush=True)  # fmt: skip
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(test), len(test)) for _ in range(args.resamples)]
    for weight in args.weights:
        d = np.array([
            np.subtract(
                onboarding.figures(test.take(idx), first[weight][idx])[:2],
                onboarding.figures(test.take(idx), first[None][idx])[:2],
            )
            for idx in draws
        ])  # fmt: skip
        ahead = np.mean(d > 0, axis=0)
        print(
            f"bootstrap (seed {args.seeds[0]}, {args.resamples} resamples), {_name(weight)} - "
            f"none: quality {d[:, 0].mean():+.4f} ± {d[:, 0].std():.4f} (ahead {ahead[0]:.0%}), "
            f"AIQ {d[:, 1].mean():+.4f} ± {d[:, 1].std():.4f} (ahead {ahead[1]:.0%})"
        )
    print(f"{time.perf_counter() - started:.0f} s in all")


def _split(task: str | None, prompt: str, parts: int) -> str | None:
    """``task`` dealt into ``parts`` labels by a stable hash of ``prompt``."""
    if task is None or parts <= 1:
        return task
    part = int(hashlib.sha1(prompt.encode()).hexdigest(), 16) % parts
    return f"{task}/{part}"


def _name(weight: float | None) -> str:
    return "no heads" if weight is None else f"heads, task_weight {weight:g}"


if __name__ == "__main__":
    main()
