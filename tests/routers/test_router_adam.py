"""Adam's chunked in-place update is the textbook update, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from polyroute.routing.routers import training
from polyroute.routing.routers.training import Adam


def textbook(p: np.ndarray, grads: list[np.ndarray], lr: float) -> np.ndarray:
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + np.float32(1 - 0.9) * g
        v = 0.999 * v + (np.float32(1 - 0.999) * g) * g
        p = p - ((m / (1 - 0.9**t)) * lr / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)).astype(np.float32)
    return p


@pytest.mark.parametrize("chunk", [7, 64, 1 << 14])
def test_the_update_chunk_by_chunk_is_the_textbook_one(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "ADAM_CHUNK", chunk)
    rng = np.random.default_rng(0)
    start = {"w": rng.normal(size=(50, 9)).astype(np.float32), "b": np.zeros(3, np.float32)}
    grads = [
        {
            "w": rng.normal(size=(50, 9)).astype(np.float32),
            "b": rng.normal(size=3).astype(np.float32),
        }
        for _ in range(5)
    ]
    params = {k: v.copy() for k, v in start.items()}
    w_before = params["w"]
    adam = Adam(params, lr=0.01)
    for g in grads:
        adam.step(g)
    assert params["w"] is w_before  # in place: the net's arrays are the ones updated
    for k in start:
        expected = textbook(start[k], [g[k] for g in grads], 0.01)
        np.testing.assert_array_equal(params[k], expected)
    # a gradient that is not contiguous (a transposed view) is read the same way
    transposed = {"w": np.asfortranarray(grads[0]["w"]), "b": grads[0]["b"]}
    again = {k: v.copy() for k, v in start.items()}
    Adam(again, lr=0.01).step(transposed)
    np.testing.assert_array_equal(again["w"], textbook(start["w"], [grads[0]["w"]], 0.01))
