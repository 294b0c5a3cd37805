"""The routing dataset format: what loads, what is refused (and how it says so), the helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyroute.routing.prompt import flatten_messages
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS: list[dict[str, Any]] = [
    {
        "id": "a",
        "prompt": "2+2?",
        "scores": {"m1": 1.0, "m2": 0.0},
        "costs": {"m1": 0.5, "m2": 0.1},
        "task": "math",
    },
    {
        "id": "b",
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "scores": {"m2": 0.25, "m3": 1},
    },
    {"id": "c", "prompt": [{"role": "user", "content": "  2+2?\n"}], "scores": {"m1": 0.5}},
]


def test_load_builds_aligned_arrays_with_nan_where_unknown(tmp_path: Path) -> None:
    ds = RoutingDataset.load(write_jsonl(tmp_path / "d.jsonl", ROWS))
    assert ds.ids == ["a", "b", "c"]
    assert ds.models == ["m1", "m2", "m3"]  # order of first appearance
    assert ds.prompts == ["2+2?", "system: Be brief.\nuser: Hi", "  2+2?\n"]
    assert ds.tasks == ["math", None, None]
    np.testing.assert_array_equal(
        ds.scores, [[1.0, 0.0, np.nan], [np.nan, 0.25, 1.0], [0.5, np.nan, np.nan]]
    )
    assert ds.costs is not None
    np.testing.assert_array_equal(ds.costs[0], [0.5, 0.1, np.nan])
    assert np.isnan(ds.costs[1:]).all()
    assert not ds.has_all_scores and not ds.has_all_costs


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    ds = RoutingDataset.load(write_jsonl(tmp_path / "d.jsonl", ROWS))
    ds.save(tmp_path / "out" / "e.jsonl")
    again = RoutingDataset.load(tmp_path / "out" / "e.jsonl")
    assert again.ids == ds.ids and again.prompts == ds.prompts and again.tasks == ds.tasks
    np.testing.assert_array_equal(again.scores, ds.scores)
    assert again.costs is not None and ds.costs is not None
    np.testing.assert_array_equal(again.costs, ds.costs)


def test_dataset_without_any_cost_has_costs_none(tmp_path: Path) -> None:
    ds = RoutingDataset.load(
        write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "prompt": "p", "scores": {"m": 1}}])
    )
    assert ds.costs is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt": "p", "scores": {"m": 1}}', "'id' must be a non-empty string"),
        ('{"id": 3, "prompt": "p", "scores": {"m": 1}}', "'id' must be a non-empty string"),
        ('{"id": "x", "scores": {"m": 1}}', "'prompt' must be a string or a non-empty list"),
        ('{"id": "x", "prompt": [{"role": "user"}], "scores": {"m": 1}}', "needs a 'content'"),
        ('{"id": "x", "prompt": "p", "scores": {}}', "at least one model"),
        ('{"id": "x", "prompt": "p", "scores": {"m": 1.5}}', "scores['m'] = 1.5 is not in [0, 1]"),
        ('{"id": "x", "prompt": "p", "scores": {"m": "high"}}', "scores['m'] must be a number"),
        ('{"id": "x", "prompt": "p", "scores": {"m": true}}', "scores['m'] must be a number"),
        ('{"id": "x", "prompt": "p", "scores": {"m": 1}, "costs": {"m": -1}}', "is not >= 0"),
        ('{"id": "x", "prompt": "p", "scores": {"m": 1}, "costs": {"z": 1}}', "'z' with no score"),
        ('{"id": "x", "prompt": "p", "scores": {"m": 1}, "task": 7}', "'task' must be a string"),
        ('{"id": "x", "prompt": "p", "score": {"m": 1}}', "unknown field(s) 'score'"),
    ],
)
def test_malformed_line_names_file_line_and_problem(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "ok", "prompt": "p", "scores": {"m": 1}})
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(RoutingDataError) as e:
        RoutingDataset.load(path)
    assert f"{path}:3:" in e.value.message
    assert message in e.value.message


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    row = {"id": "x", "prompt": "p", "scores": {"m": 1}}
    with pytest.raises(RoutingDataError, match=r"d.jsonl:2: id 'x' already used on line 1"):
        RoutingDataset.load(write_jsonl(tmp_path / "d.jsonl", [row, row]))


def test_empty_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(RoutingDataError, match="no rows"):
        RoutingDataset.load(tmp_path / "e.jsonl")
    with pytest.raises(RoutingDataError, match="cannot read"):
        RoutingDataset.load(tmp_path / "missing.jsonl")


def test_line_separator_inside_a_prompt_does_not_split_the_row(tmp_path: Path) -> None:
    row = {"id": "x", "prompt": "one\u2028two", "scores": {"m": 1}}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    ds = RoutingDataset.load(path)
    assert ds.prompts == ["one\u2028two"]
    ds.save(path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1


def test_dedupe_keeps_first_of_each_prompt_text(tmp_path: Path) -> None:
    ds = RoutingDataset.load(write_jsonl(tmp_path / "d.jsonl", ROWS))
    d = ds.dedupe()  # "2+2?" and "  2+2?\n" differ only in whitespace
    assert d.ids == ["a", "b"]
    np.testing.assert_array_equal(d.scores, ds.scores[:2])


def test_without_prompts_in_removes_train_test_overlap(tmp_path: Path) -> None:
    test = RoutingDataset.load(write_jsonl(tmp_path / "t.jsonl", ROWS))
    train = RoutingDataset.load(
        write_jsonl(tmp_path / "tr.jsonl", [{"id": "z", "prompt": "2+2?  ", "scores": {"q": 0}}])
    )
    assert test.without_prompts_in(train).ids == ["b"]
    assert test.without_prompts_in(["system: Be brief.\nuser: Hi"]).ids == ["a", "c"]


def test_subset_models_reorders_and_refuses_unknown(tmp_path: Path) -> None:
    ds = RoutingDataset.load(write_jsonl(tmp_path / "d.jsonl", ROWS))
    sub = ds.subset_models(["m2", "m1"])
    assert sub.models == ["m2", "m1"]
    np.testing.assert_array_equal(sub.scores[0], [0.0, 1.0])
    with pytest.raises(RoutingDataError, match="'nope' not in the dataset; it has: m1, m2, m3"):
        ds.subset_models(["m1", "nope"])


def test_flatten_keeps_a_lone_user_message_as_is_and_text_parts_only() -> None:
    assert flatten_messages([{"role": "user", "content": "hi"}]) == "hi"
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]
    assert flatten_messages([{"role": "user", "content": parts}]) == "look"
    msgs: list[dict[str, Any]] = [
        {"role": "assistant", "content": None},
        {"role": "user", "content": "x"},
    ]
    assert flatten_messages(msgs) == "x"  # the turn to answer (tests/routers/test_router_prompt.py)


_score = st.one_of(st.none(), st.floats(0, 1, allow_nan=False))
_row = st.fixed_dictionaries(
    {
        "prompt": st.text(min_size=0, max_size=30),
        "scores": st.dictionaries(st.sampled_from(["a", "b", "c"]), _score, min_size=1),
        "task": st.one_of(st.none(), st.text(max_size=5)),
    }
)


@settings(max_examples=50, deadline=None)
@given(st.lists(_row, min_size=1, max_size=8))
def test_round_trip_keeps_every_row_and_value(tmp_path_factory: Any, rows: list[Any]) -> None:
    rows = [r for r in rows if any(v is not None for v in r["scores"].values())]
    if not rows:
        return
    for i, r in enumerate(rows):
        r["id"] = f"r{i}"
    path = write_jsonl(tmp_path_factory.mktemp("rt") / "d.jsonl", rows)
    ds = RoutingDataset.load(path)
    ds.save(path)
    again = RoutingDataset.load(path)
    assert len(again) == len(rows)
    assert again.prompts == [r["prompt"] for r in rows]
    for i, r in enumerate(rows):
        for m, v in r["scores"].items():
            if m not in again.models:  # never scored on any row
                assert v is None
                continue
            got = again.scores[i, again.models.index(m)]
            assert (math.isnan(got) and v is None) or got == v
