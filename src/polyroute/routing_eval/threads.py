"""Routers trained side by side: a couple of threads, one BLAS thread each.

``polyroute train`` fits many routers that do not depend on each other: one per
out-of-fold fold and the final one (:mod:`~polyroute.routing_eval.train`), then one per
training model to choose how new models are added
(:mod:`~polyroute.routing_eval.onboard_tuning`). A fit is small matrix products (batches of
128 rows) on one BLAS thread — more threads per fit made training far slower on a busy
machine (:func:`polyroute.routing.routers.training.fit_ensemble`) — so one fit keeps one
core busy. numpy releases the GIL in those products, so two fits on two threads overlap:
on 2 cores two mf fits take 49 s against 67 s one after the other
(``benchmarks/train_time.py``, 2026-12-04). More threads than :data:`TRAINING_THREADS`
help little: the fits share the memory bandwidth, and part of each holds the GIL.

Threads, not processes: the fits share the training arrays without a copy, and a result
(a router) comes back without pickling. Each fit is seeded on its own, so the routers are
the same, to the byte, as fitted one after the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import threadpoolctl  # type: ignore[import-untyped]

#: Fits run at once, each on one BLAS thread (at most the machine's cores).
TRAINING_THREADS = 2

T = TypeVar("T")
R = TypeVar("R")

#: ``map``'s shape: results in the order of the items.
Mapper = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]


def default_workers() -> int:
    """:data:`TRAINING_THREADS`, or fewer on a machine with fewer cores."""
    return max(1, min(TRAINING_THREADS, os.cpu_count() or 1))


@contextmanager
def training_threads(workers: int | None = None) -> Iterator[Mapper[Any, Any]]:
    """A ``map`` that runs its calls on ``workers`` threads (default :func:`default_workers`).

    Inside the block BLAS runs one thread per call. Results come back in order; the first
    call that raises raises from the iteration. On leaving the block — at the end, on an
    error, or on Ctrl-C — calls not started yet are cancelled and running ones are waited
    for, so no fit goes on behind the caller's back. ``workers=1`` runs the calls in order on
    the caller's thread (no pool at all).
    """
    n = default_workers() if workers is None else workers
    if n < 1:
        raise ValueError("workers must be at least 1")
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="polyroute-fit") if n > 1 else None
    try:
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            yield pool.map if pool is not None else map
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
