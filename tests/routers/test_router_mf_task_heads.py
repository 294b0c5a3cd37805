"""mf's task heads: the prompts' task labels trained as extra columns, then dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.routers.router_fakes import TopicEmbedder

from polyroute.routing.persist import load_router, save_router
from polyroute.routing.routers.mf import MFRouter
from polyroute.routing.routers.training import task_columns
from polyroute.routing_eval.dataset import RoutingDataset
from polyroute.routing_eval.train import train_router


def test_task_columns_are_one_hot_unknown_where_unlabelled_and_none_for_one_task() -> None:
    cols = task_columns(["math", "code", None, "math"], 4)
    assert cols is not None
    np.testing.assert_array_equal(cols[[0, 1, 3]], [[0, 1], [1, 0], [0, 1]])  # sorted: code, math
    assert np.isnan(cols[2]).all()
    assert task_columns(["math", "math", None], 3) is None  # nothing to tell apart
    assert task_columns(None, 3) is None
    with pytest.raises(ValueError, match="2 tasks for 3 prompts"):
        task_columns(["a", "b"], 3)


def task_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Prompts of two tasks, told apart by a faint direction of the embedding among strong
    noise; two known models whose scores follow the noise only (they cannot teach a tower
    the task), and a newcomer that answers every prompt of one task and none of the other."""
    rng = np.random.default_rng(seed)
    task = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 12))
    x[:, 0] += 1.5 * (2 * task - 1)  # the task's direction
    known = np.column_stack([x[:, 1] > 0, x[:, 2] > 0]).astype(np.float64)
    newcomer = task.astype(np.float64)
    return x.astype(np.float32), known, newcomer, ["math" if t else "prose" for t in task]


def newcomer_accuracy(heads: bool, weight: float = 1.0) -> float:
    x, known, newcomer, tasks = task_data(400, seed=0)
    xt, _, yt, _ = task_data(400, seed=1)
    router = MFRouter(
        hidden=16, dim=4, ensemble=1, wide_bits=0, task_heads=heads, task_weight=weight, seed=0
    )
    router.fit(x, known, ["a", "b"], tasks=tasks)
    router.add_model("new", x, newcomer)  # all its data: what the frozen tower allows
    predicted = router.predict_embeddings(xt)[:, router.models.index("new")]
    return float(((predicted > 0.5) == (yt > 0.5)).mean())


def test_task_heads_give_a_model_added_later_the_directions_its_quality_follows() -> None:
    with_heads, without = newcomer_accuracy(True), newcomer_accuracy(False)
    assert with_heads > 0.9  # the tower learned the task: the newcomer's vector can use it
    assert with_heads > without + 0.1
    # Softened targets (0.5 ± 0.15) pull on the tower less, but still teach it the task.
    assert newcomer_accuracy(True, weight=0.3) > without + 0.1


def test_task_weight_is_a_checked_setting() -> None:
    assert MFRouter(task_weight=0.3).params()["task_weight"] == 0.3
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="task_weight must be in"):
            MFRouter(task_weight=bad)


def test_the_heads_are_dropped_and_a_router_without_them_ignores_the_labels(
    tmp_path: Path,
) -> None:
    x, known, _, tasks = task_data(200, seed=2)
    with_heads = MFRouter(hidden=8, dim=4, ensemble=2, wide_bits=0, seed=3)
    with_heads.fit(x, known, ["a", "b"], tasks=tasks)
    assert with_heads.params()["task_heads"] is True
    assert with_heads.models == ["a", "b"]
    assert [net["v"].shape for net in with_heads._nets] == [(4, 2), (4, 2)]
    assert with_heads.predict_embeddings(x).shape == (200, 2)
    save_router(with_heads, tmp_path / "r")
    loaded = load_router(tmp_path / "r")
    np.testing.assert_allclose(loaded.predict_embeddings(x), with_heads.predict_embeddings(x))

    assert MFRouter().params()["task_heads"] is True  # the default
    off = MFRouter(hidden=8, dim=4, ensemble=2, wide_bits=0, seed=3, task_heads=False)
    off.fit(x, known, ["a", "b"], tasks=tasks)
    unlabelled = MFRouter(hidden=8, dim=4, ensemble=2, wide_bits=0, seed=3)  # heads on, no tasks
    unlabelled.fit(x, known, ["a", "b"])
    np.testing.assert_array_equal(off.predict_embeddings(x), unlabelled.predict_embeddings(x))
    assert not np.allclose(with_heads.predict_embeddings(x), unlabelled.predict_embeddings(x))


def test_train_passes_the_datas_tasks_to_every_router_it_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(4)
    n = 90
    tasks = [("math", "code", "prose")[i % 3] for i in range(n)]
    data = RoutingDataset(
        ids=[f"p{i}" for i in range(n)],
        prompts=[f"{t} question {i}" for i, t in enumerate(tasks)],
        models=["a", "b", "c"],
        scores=(rng.random((n, 3)) > 0.5).astype(np.float64),
        costs=np.tile([1e-4, 5e-4, 1e-3], (n, 1)),
        tasks=list(tasks),
    )
    seen: list[Any] = []
    fit = MFRouter._fit

    def spy(self: MFRouter, embeddings: Any, scores: Any, texts: Any, tasks: Any = None) -> None:
        seen.append(None if tasks is None else tasks.shape)
        fit(self, embeddings, scores, texts, tasks)

    monkeypatch.setattr(MFRouter, "_fit", spy)
    params = {"hidden": 8, "dim": 4, "ensemble": 1, "wide_bits": 0}  # heads: the default
    train_router(data, kind="mf", embedder=TopicEmbedder(), params=params, folds=3)
    # out-of-fold routers (3), the router itself, and the simulation's routers without a model
    assert len(seen) >= 4
    assert all(shape is not None and shape[1] == 3 for shape in seen)
