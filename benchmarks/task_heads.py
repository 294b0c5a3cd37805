"""mf with and without task heads on LLMRouter's test split, over training seeds, with a paired
bootstrap of the difference (docs/routers.md, "With task heads": why they are opt-in).

Trained on the train split (5,608 prompts), evaluated on the 381 de-duplicated test prompts
not in train, default mf on ``minilm-lexical``; prints quality at the best model's cost and
AIQ per seed and variant, then, for the first seed, the mean and sd of (heads − none) over
bootstrap resamples of the test prompts and how often heads come out ahead.

Usage::

    python benchmarks/task_heads.py                 # seeds 0 1 2, 200 resamples (~8 min)
    python benchmarks/task_heads.py --seeds 0 --resamples 50
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    started = time.perf_counter()
    train, test = onboarding.load(onboarding.DATA)
    embedder = CachedEmbedder(get_embedder("minilm-lexical"), default_cache_dir())
    x_train, x_test = embedder.embed(train.prompts), embedder.embed(test.prompts)
    first: dict[bool, np.ndarray] = {}
    for seed in args.seeds:
        for heads in (True, False):
            router = MFRouter(seed=seed, task_heads=heads)
            router.fit(x_train, train.scores, train.models, list(train.prompts), list(train.tasks))
            p = router.predict_embeddings(x_test, list(test.prompts))
            first.setdefault(heads, p)
            q, aiq, _ = onboarding.figures(test, p)
            print(f"seed {seed}, task heads {'on ' if heads else 'off'}: quality at the best "
                  f"model's cost {q:.4f}, AIQ {aiq:.4f}", flush=True)  # fmt: skip
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(args.resamples):
        idx = rng.integers(0, len(test), len(test))
        sample = test.take(idx)
        on, off = (
            onboarding.figures(sample, first[True][idx]),
            onboarding.figures(sample, first[False][idx]),
        )
        diffs.append((on[0] - off[0], on[1] - off[1]))
    d = np.array(diffs)
    ahead = np.mean(d > 0, axis=0)
    print(
        f"bootstrap (seed {args.seeds[0]}, {args.resamples} resamples), heads - none: "
        f"quality {d[:, 0].mean():+.4f} ± {d[:, 0].std():.4f} (heads ahead {ahead[0]:.0%}), "
        f"AIQ {d[:, 1].mean():+.4f} ± {d[:, 1].std():.4f} (heads ahead {ahead[1]:.0%})"
    )
    print(f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
