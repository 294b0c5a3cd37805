"""State survives a restart (JSON round trip), and concurrent feedback loses nothing."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from tests.online.online_sim import REQUEST, candidates, unit_vectors

from polyroute.routing.online import LinUCBRouter, OnlineRouter, ThompsonRouter, UCB1Router

ARMS = ["a", "b", "c", "d"]
MAKERS: dict[str, Callable[[], OnlineRouter]] = {
    "ucb1": lambda: UCB1Router(exploration=0.5),
    "thompson": lambda: ThompsonRouter(seed=11),
    "linucb": lambda: LinUCBRouter(input_dim=16, dim=8, seed=4),
}


def stream(seed: int, n: int) -> Iterator[tuple[np.ndarray, dict[str, float]]]:
    """Per step, a context and every arm's reward (fractional some of the time)."""
    rng = np.random.default_rng(seed)
    contexts = unit_vectors(rng, n, 16)
    for t in range(n):
        rewards = rng.random(len(ARMS))
        binary = rng.random() < 0.7
        yield (
            contexts[t],
            {m: float(r < 0.5) if binary else float(r) for m, r in zip(ARMS, rewards, strict=True)},
        )


def play(
    router: OnlineRouter, steps: Iterator[tuple[np.ndarray, dict[str, float]]]
) -> list[tuple[str, dict[str, float]]]:
    out = []
    for ctx, rewards in steps:
        d = router.route_with_context(REQUEST, candidates(ARMS), ctx)
        router.update(d.model, rewards[d.model], ctx)
        out.append((d.model, d.scores))
    return out


@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_restored_router_makes_the_same_decisions(kind: str) -> None:
    original = MAKERS[kind]()
    play(original, stream(0, 300))
    saved = json.dumps(original.state_dict(), allow_nan=False)  # what the store keeps
    restored = MAKERS[kind]()
    restored.load_state_dict(json.loads(saved))
    assert restored.state_dict() == original.state_dict()
    after = play(original, stream(1, 200))
    assert play(restored, stream(1, 200)) == after
    # Not trivially equal: the routers kept learning and switched models along the way.
    assert len({model for model, _ in after}) > 1


@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_fresh_router_round_trips_and_other_kinds_are_refused(kind: str) -> None:
    router = MAKERS[kind]()
    state = json.loads(json.dumps(router.state_dict()))
    MAKERS[kind]().load_state_dict(state)
    other = next(k for k in MAKERS if k != kind)
    with pytest.raises(ValueError, match=f"not '{other}'"):
        MAKERS[other]().load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        MAKERS[kind]().load_state_dict({**state, "version": 999})


def test_linucb_refuses_a_state_learned_with_other_features() -> None:
    router = LinUCBRouter(input_dim=16, dim=8, seed=4)
    router.update("a", 1.0, np.ones(16) / 4)
    state = router.state_dict()
    with pytest.raises(ValueError, match=r"\(dim differ\)"):
        LinUCBRouter(input_dim=16, dim=4, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match=r"\(seed differ\)"):
        LinUCBRouter(input_dim=16, dim=8, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match=r"\(prior differ\)"):
        LinUCBRouter(
            input_dim=16, dim=8, seed=4, prior=lambda e: {}, prior_name="p"
        ).load_state_dict(state)


@pytest.mark.parametrize(
    ("kind", "arms"),
    [
        ("ucb1", {"a": {"n": 2, "sum": 3.0}}),
        ("ucb1", {"a": {"n": -1, "sum": 0.0}}),
        ("thompson", {"a": {"successes": 1.5, "failures": 0}}),
        ("linucb", {"a": {"A": [[1.0]], "b": [0.0], "n": 1}}),
    ],
)
def test_malformed_states_are_refused(kind: str, arms: dict[str, object]) -> None:
    state = MAKERS[kind]().state_dict()
    with pytest.raises(ValueError, match="arms"):
        MAKERS[kind]().load_state_dict({**state, "arms": arms})


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible, so that races show up if there are any."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.usefixtures("fast_switching")
@pytest.mark.parametrize("kind", list(MAKERS))
def test_concurrent_feedback_keeps_counts_exact(kind: str) -> None:
    router = MAKERS[kind]()
    ctx = np.full(16, 0.25)
    threads, per_thread = 8, 300
    errors: list[BaseException] = []
    stop = threading.Event()

    def feedback(i: int) -> None:
        try:
            for j in range(per_thread):
                router.update(ARMS[i % len(ARMS)], float(j % 2), ctx)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def routing() -> None:
        try:
            while not stop.is_set():
                router.route_with_context(REQUEST, candidates(ARMS), ctx)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    router_thread = threading.Thread(target=routing)
    router_thread.start()
    workers = [threading.Thread(target=feedback, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    router_thread.join()
    assert errors == []
    arms = router.state_dict()["arms"]
    expected = threads // len(ARMS) * per_thread  # feedback per arm
    for m in ARMS:
        arm = arms[m]
        if kind == "ucb1":
            assert (arm["n"], arm["sum"]) == (expected, expected / 2)
        elif kind == "thompson":
            assert (arm["successes"], arm["failures"]) == (expected / 2, expected / 2)
        else:
            assert arm["n"] == expected
            x = np.append(router._featurize([m], ctx).x[:-1], 1.0)
            assert isinstance(router, LinUCBRouter)
            np.testing.assert_allclose(
                np.array(arm["A"]), router.ridge * np.eye(9) + expected * np.outer(x, x)
            )
