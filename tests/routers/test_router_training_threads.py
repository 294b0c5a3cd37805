"""Routers fitted side by side (``routing_eval/threads.py``) are the routers fitted in order."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder

from polyroute.routing.routers.learned import LearnedRouter
from polyroute.routing.routers.mf import MFRouter
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset
from polyroute.routing_eval.threads import training_threads
from polyroute.routing_eval.train import fit_with_out_of_fold, out_of_fold


def test_calls_run_on_two_threads_and_come_back_in_order() -> None:
    names: set[str] = set()
    both = threading.Barrier(2, timeout=10)  # only passes if two calls run at once

    def call(i: int) -> int:
        names.add(threading.current_thread().name)
        if i < 2:
            both.wait()
        return i * i

    with training_threads(2) as run:
        assert list(run(call, range(6))) == [0, 1, 4, 9, 16, 25]
    assert len(names) == 2 and all(n.startswith("polyroute-fit") for n in names)
    with training_threads(1) as run:  # in order, on this thread
        assert (
            list(run(lambda i: threading.current_thread().name, range(2)))
            == [threading.current_thread().name] * 2
        )
    with pytest.raises(ValueError, match="at least 1"), training_threads(0):
        pass


def test_an_error_cancels_the_calls_not_started_and_waits_for_the_running_one() -> None:
    started: list[int] = []
    finished: list[int] = []

    def call(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("fold 1 is bad")
        time.sleep(0.05)
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="fold 1 is bad"), training_threads(2) as run:
        list(run(call, range(50)))
    # the pool was shut down before the error left the block: nothing runs on behind it
    snapshot = list(started)
    time.sleep(0.2)
    assert started == snapshot and sorted(finished) == sorted(i for i in started if i)
    assert len(started) < 50  # the calls queued behind the error never ran


def _mf(embedder: TopicEmbedder) -> MFRouter:
    return MFRouter(hidden=8, dim=4, ensemble=2, embedder=embedder, wide_bits=10)


def test_threaded_folds_and_final_fit_are_the_ones_fitted_in_order(
    dataset: RoutingDataset, embedder: TopicEmbedder
) -> None:
    x = embedder.embed(dataset.prompts)
    p2, r2 = fit_with_out_of_fold(lambda: _mf(embedder), x, dataset, folds=3, workers=2)
    p1, r1 = fit_with_out_of_fold(lambda: _mf(embedder), x, dataset, folds=3, workers=1)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(out_of_fold(lambda: _mf(embedder), x, dataset, folds=3), p1)
    a1, a2 = r1.state(), r2.state()
    assert a1.keys() == a2.keys()
    for key in a1:
        np.testing.assert_array_equal(a1[key], a2[key])
    # the final router saw every prompt: it is not one of the folds' routers
    fitted = _mf(embedder)
    fitted.fit(x, dataset.scores, dataset.models, dataset.prompts, dataset.tasks)
    np.testing.assert_array_equal(
        fitted.predict_embeddings(x, dataset.prompts), r2.predict_embeddings(x, dataset.prompts)
    )
    # out-of-fold predictions are not the final router's own (it saw those prompts)
    assert not np.allclose(p2, r2.predict_embeddings(x, dataset.prompts))


def test_a_fold_that_cannot_train_is_named(
    dataset: RoutingDataset, embedder: TopicEmbedder
) -> None:
    class Picky(MFRouter):
        def fit(self, embeddings, scores, models, texts=None, tasks=None):  # type: ignore[no-untyped-def]
            if len(embeddings) < len(dataset):
                raise ValueError("not enough prompts")
            return super().fit(embeddings, scores, models, texts, tasks)

    def build() -> LearnedRouter:
        return Picky(hidden=8, dim=4, ensemble=1, embedder=embedder, wide_bits=0)

    x = embedder.embed(dataset.prompts)
    with pytest.raises(RoutingDataError, match=r"cannot train on fold \d of 3: not enough"):
        fit_with_out_of_fold(build, x, dataset, folds=3)
