"""Importers: RouterBench and RouteLLM CSVs, LLMRouter JSON; errors name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyroute.routing_eval.dataset import RoutingDataError
from polyroute.routing_eval.importers import IMPORTERS, import_dataset

FIXTURES = Path(__file__).parent / "fixtures"


def test_builtins_are_in_the_registry() -> None:
    assert {"llmrouter", "routerbench", "routellm"} <= set(IMPORTERS.names())


def test_routerbench_scores_costs_ids_and_tasks() -> None:
    ds, est = import_dataset("routerbench", FIXTURES / "routerbench_small.csv")
    assert est is None  # no prices given: the missing cost stays missing
    assert ds.ids == ["mmlu.0", "gsm8k.1", "mtbench.2"]
    assert ds.tasks == ["mmlu", "gsm8k", "mt-bench"]
    assert ds.models == ["model-a", "model-b"]
    assert (
        ds.prompts[1] == "A farmer has 3 cows.\nEach cow eats 2 bales a day.\nHow many bales a day?"
    )
    assert ds.prompts[2] == 'Write a haiku, with "quotes".'
    np.testing.assert_array_equal(ds.scores, [[1, 1], [0, 1], [0.5, 0.75]])
    assert ds.costs is not None
    np.testing.assert_array_equal(ds.costs[:2], [[0.0001, 0.003], [0.0002, 0.004]])
    assert np.isnan(ds.costs[2, 0]) and ds.costs[2, 1] == 0.002


def test_routerbench_missing_cost_is_estimated_from_prices(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"model-a": [1.0, 1.0], "model-b": [9, 9]}))
    ds, est = import_dataset(
        "routerbench", FIXTURES / "routerbench_small.csv", prices=tmp_path / "p.json"
    )
    assert est is not None and est.estimated == 1
    assert ds.has_all_costs and ds.costs is not None
    assert ds.costs[0, 0] == 0.0001  # costs in the data are kept
    assert ds.costs[2, 0] > 256 / 1e6  # 256 output tokens at $1/M, plus the prompt


def test_routellm_booleans_and_index_column() -> None:
    ds, est = import_dataset("routellm", FIXTURES / "routellm_small.csv")
    assert est is None and ds.costs is None
    assert ds.models == ["mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"]  # no *_response
    assert ds.ids == [f"routellm_small-{i}" for i in range(4)]
    np.testing.assert_array_equal(ds.scores, [[1, 1], [0, 1], [1, 0], [0, 0]])
    assert ds.prompts[0].startswith("Which organ filters blood?\nA. Heart")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fmt", "text", "where", "message"),
    [
        ("routellm", 'prompt,m\nok,True\n"multi\nline",maybe\n', ":3:", "expected True or False"),
        ("routellm", "question,m\nq,True\n", ":1:", "no 'prompt' column"),
        ("routellm", "prompt,m\nq,True,extra\n", ":2:", "3 fields, the header has 2"),
        ("routerbench", "prompt,m\nq,1\nr,high\n", ":3:", "score 'high' is not a number"),
        ("routerbench", "prompt,m\nq,2\n", ":2:", "not a number in [0, 1]"),
        ("routerbench", "prompt,m,m|total_cost\nq,1,-1\n", ":2:", "cost '-1' is not a number >= 0"),
        ("routerbench", "prompt,m,z|total_cost\nq,1,1\n", ":1:", "for 'z' with no score column"),
        ("routerbench", "prompt,m\nq,\n", ":2:", "no score for any model"),
        ("routerbench", "sample_id,prompt,m\nx,q,1\nx,r,0\n", ":3:", "id 'x' already used"),
    ],
)
def test_csv_errors_name_file_and_line(
    tmp_path: Path, fmt: str, text: str, where: str, message: str
) -> None:
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(RoutingDataError) as e:
        import_dataset(fmt, path)
    assert f"{path}{where}" in e.value.message
    assert message in e.value.message


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        RoutingDataError, match=r"unknown format 'nope'; choose one of: .*llmrouter"
    ):
        import_dataset("nope", tmp_path / "x.csv")
    with pytest.raises(RoutingDataError, match="no such file"):
        import_dataset("routellm", tmp_path / "x.csv")


def llmrouter_tree(tmp_path: Path) -> Path:
    """A miniature of LLMRouter's data/ folder."""
    data = tmp_path / "data"
    (data / "dcrouter_preprocessed").mkdir(parents=True)
    (data / "example_data" / "query_data").mkdir(parents=True)
    (data / "example_data" / "llm_candidates").mkdir(parents=True)
    items = [
        {"question": "What is 2+2?", "scores": {"small": 1.0, "big": 1.0}, "cluster_id": 0},
        {"question": "Prove it.", "scores": {"small": 0.0, "big": 0.5}, "cluster_id": 1},
    ]
    (data / "dcrouter_preprocessed" / "test.json").write_text(json.dumps(items, indent=2))
    queries = [
        {"task_name": "gsm8k", "query": "What is 2+2?"},
        {"task_name": "math", "query": "What is 2+2?"},  # a second label: the first one wins
    ]
    (data / "example_data" / "query_data" / "default_query_test.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in queries)
    )
    prices = {
        "small": {"input_price": 0.1, "output_price": 0.1},
        "big": {"input_price": 0.9, "output_price": 0.9},
    }
    (data / "example_data" / "llm_candidates" / "default_llm.json").write_text(json.dumps(prices))
    return data / "dcrouter_preprocessed" / "test.json"


def test_llmrouter_joins_tasks_and_estimates_costs_from_its_prices(tmp_path: Path) -> None:
    ds, est = import_dataset("llmrouter", llmrouter_tree(tmp_path))
    assert ds.ids == ["test-0", "test-1"]
    assert ds.tasks == ["gsm8k", None]  # "Prove it." is in no query file
    np.testing.assert_array_equal(ds.scores, [[1, 1], [0, 0.5]])
    assert est is not None and est.estimated == 4 and est.output_tokens == 256
    assert ds.costs is not None
    np.testing.assert_allclose(ds.costs[:, 1] / ds.costs[:, 0], 9.0)  # same tokens, 9× price


def test_llmrouter_item_errors_give_the_line_the_item_starts_on(tmp_path: Path) -> None:
    path = llmrouter_tree(tmp_path)
    path.write_text(
        '[\n  {"question": "a", "scores": {"m": 1}},\n'
        '  {"question": "b",\n   "scores": {"m": 7}}\n]'
    )
    with pytest.raises(RoutingDataError) as e:
        import_dataset("llmrouter", path)
    assert (
        f"{path}:3: scores['m']" in e.value.message and "not a number in [0, 1]" in e.value.message
    )
    path.write_text('[{"question": "a", "scores": {"m": 1}}\n {"question": "b"}]')
    with pytest.raises(RoutingDataError, match=r"test.json:2: expected ',' or '\]'"):
        import_dataset("llmrouter", path)
    path.write_text('{"question": "a"}')
    with pytest.raises(RoutingDataError, match=r"test\.json:1: expected a JSON list"):
        import_dataset("llmrouter", path)
