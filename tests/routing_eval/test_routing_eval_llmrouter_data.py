"""The real LLMRouter data in ../shared/data (skipped where it is not there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polyroute.routing_eval import metrics
from polyroute.routing_eval.importers import import_dataset

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "llmrouter" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared LLMRouter data not present")


def test_dedup_test_set_matches_the_published_figures() -> None:
    train, _ = import_dataset("llmrouter", DATA / "dcrouter_preprocessed" / "train.json")
    test, est = import_dataset("llmrouter", DATA / "dcrouter_preprocessed" / "test.json")
    assert (len(train), len(test)) == (5608, 500)
    assert all(t is not None for t in train.tasks + test.tasks)  # every question has a task
    assert est is not None and est.estimated == 500 * 9
    held_out = test.dedupe().without_prompts_in(train).subset_models(train.models)
    assert len(held_out) == 381  # 119 test questions are also in train
    assert held_out.costs is not None
    best = metrics.best_model(held_out.scores, held_out.costs)
    assert held_out.models[best] == "llama-3.1-nemotron-51b-instruct"
    assert held_out.scores[:, best].mean() == pytest.approx(0.60, abs=0.01)
    oracle = metrics.oracle_choice(held_out.scores, held_out.costs)
    _, oracle_quality = metrics.outcome(held_out.scores, held_out.costs, oracle)
    assert oracle_quality == pytest.approx(0.75, abs=0.01)
    # The 0.9 $/M models cost 4.5× the 0.2 $/M ones on every prompt (same token count).
    ratio = (
        held_out.costs[:, best] / held_out.costs[:, held_out.models.index("qwen2.5-7b-instruct")]
    )
    np.testing.assert_allclose(ratio, 4.5)
