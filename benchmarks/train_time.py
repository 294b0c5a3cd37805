"""What an mf fit costs on LLMRouter's train split, and what training two at once saves
(docs/routers.md, "size and speed"; ``routing_eval/threads.py``).

Times, on one BLAS thread (as ``polyroute train``'s onboarding simulation runs them), one
``MFRouter.fit`` of the default mf with task heads and one without, then two fits one after
the other against the same two fits on two threads. Run it on an otherwise idle machine.

Usage::

    python benchmarks/train_time.py          # ~4 minutes on 2 cores
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import onboarding  # noqa: E402  (benchmarks/onboarding.py: the same data, loaded the same way)

from polyroute.cli.routing import default_cache_dir  # noqa: E402
from polyroute.embeddings.base import CachedEmbedder  # noqa: E402
from polyroute.embeddings.registry import get_embedder  # noqa: E402
from polyroute.routing.routers.mf import MFRouter  # noqa: E402
from polyroute.routing_eval.threads import training_threads  # noqa: E402


def main() -> None:
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    train, _ = onboarding.load(onboarding.DATA)
    x = CachedEmbedder(get_embedder("minilm-lexical"), default_cache_dir()).embed(train.prompts)
    print(f"train split: {len(train)} prompts x {len(train.models)} models")

    def fit(seed: int = 0, heads: bool = True) -> None:
        router = MFRouter(seed=seed, task_heads=heads)
        router.fit(x, train.scores, train.models, list(train.prompts), list(train.tasks))

    with training_threads(1):  # one BLAS thread, as polyroute train's fits run
        print(f"one fit, task heads:    {_seconds(lambda: fit(heads=True)):.1f} s")
        print(f"one fit, no task heads: {_seconds(lambda: fit(heads=False)):.1f} s")
        one_by_one = _seconds(lambda: [fit(0), fit(1)])
        print(f"two fits, one after the other: {one_by_one:.1f} s")
    with training_threads(2) as run:  # the pool polyroute train fits its routers on
        both = _seconds(lambda: list(run(fit, [0, 1])))
    print(f"two fits, two threads:         {both:.1f} s ({one_by_one / both:.2f}x)")


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
