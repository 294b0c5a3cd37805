"""evaluate() on the paper case of test_routing_eval_metrics, the predictions file and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset, Row, from_rows
from polyroute.routing_eval.evaluate import (
    align_predictions,
    evaluate,
    evaluate_quality,
    write_report,
)
from polyroute.routing_eval.plot import plot_report

Q = [[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]
ADV = [0.1, 0.4, 0.3, -0.2]
PREDICTED = np.array([[0.5, 0.5 + a] for a in ADV])


def paper_dataset(costs: bool = True) -> RoutingDataset:
    return from_rows(
        [
            Row(
                id=f"p{i + 1}",
                prompt=f"prompt {i + 1}",
                scores={"weak": q[0], "strong": q[1]},
                costs={"weak": 1.0, "strong": 3.0} if costs else {},
            )
            for i, q in enumerate(Q)
        ]
    )


def test_report_on_the_paper_case(tmp_path: Path) -> None:
    report = evaluate(paper_dataset(), PREDICTED, predictions_path=tmp_path / "pred.jsonl")
    json.dumps(report, allow_nan=False)  # plain JSON, no NaN
    assert report["prompts"] == 4 and report["models"] == ["weak", "strong"]
    assert report["cost_range"] == [1.0, 3.0]
    router = report["router"]
    assert (router["quality"], router["cost"]) == (1.0, 2.5)  # λ = 0
    assert [(pt["cost"], pt["quality"]) for pt in router["curve"]] == [
        (2.5, 1.0),
        (2.0, 1.0),
        (1.5, 0.75),
        (1.0, 0.5),
    ]
    assert router["curve"][0]["lambda"] == 0.0
    assert router["curve"][-1]["lambda"] >= 0.2  # the first λ with 2λ ≥ 0.4: all weak
    assert router["curve"][0]["shares"] == {"weak": 0.25, "strong": 0.75}
    assert router["aiq"] == pytest.approx(0.875)
    assert router["hull"] == [[1.0, 0.5], [2.0, 1.0]]
    assert router["quality_at_best_model_cost"] == 1.0
    assert router["cost_to_match_best_model"] == 1.5
    assert router["cost_saving_vs_best_model"] == pytest.approx(0.5)
    assert report["best_model"] == {"name": "strong", "quality": 0.75, "cost": 3.0}
    assert report["single_models"]["weak"] == {"quality": 0.5, "cost": 1.0}
    assert report["random"]["quality"] == 0.625 and report["random"]["cost"] == 2.0
    assert report["random"]["aiq"] == pytest.approx(0.625)
    assert report["random"]["curve"] == [[1.0, 0.5], [3.0, 0.75]]
    assert report["oracle"] == {
        "quality": 1.0,
        "cost": 2.0,
        "shares": {"weak": 0.5, "strong": 0.5},
    }
    two = report["two_model"]
    assert (two["strong"], two["weak"]) == ("strong", "weak")
    assert two["apgr"] == pytest.approx(1.375)
    assert two["cpt_50_pct"] == pytest.approx(12.5) and two["cpt_80_pct"] == pytest.approx(20.0)
    assert [pt["strong_pct"] for pt in two["curve"]] == [0, 25, 50, 75, 100]

    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert rows[1] == {"id": "p2", "predicted": {"weak": 0.5, "strong": 0.9}}
    assert len(rows) == 4


def test_without_costs_the_report_measures_what_needs_none(tmp_path: Path) -> None:
    with_costs = evaluate(paper_dataset(), PREDICTED)
    report = evaluate_quality(
        paper_dataset(costs=False), PREDICTED, predictions_path=tmp_path / "pred.jsonl"
    )
    json.dumps(report, allow_nan=False)
    assert report["costs_known"] is False and with_costs["costs_known"] is True
    # APGR is defined on the share of strong calls: the same with or without costs.
    assert report["two_model"] == with_costs["two_model"]
    assert report["router"]["quality"] == with_costs["router"]["quality"] == 1.0
    assert report["router"]["shares"] == {"weak": 0.25, "strong": 0.75}
    assert report["best_model"] == {"name": "strong", "quality": 0.75, "cost": None}
    assert report["oracle"]["quality"] == 1.0 and report["oracle"]["cost"] is None
    costs = [report["router"][k] for k in ("cost", "aiq", "quality_at_best_model_cost")]
    assert costs == [None, None, None] and report["cost_range"] is None
    assert all(m["cost"] is None for m in report["single_models"].values())
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) == 4


def test_more_than_two_models_has_no_two_model_section() -> None:
    ds = from_rows(
        [
            Row(
                id=str(i),
                prompt=str(i),
                scores={"a": 1.0, "b": 0.0, "c": 0.5},
                costs={"a": 3.0, "b": 1.0, "c": 2.0},
            )
            for i in range(3)
        ]
    )
    report = evaluate(ds, np.tile([0.9, 0.1, 0.5], (3, 1)))
    assert report["two_model"] is None
    assert report["best_model"]["name"] == "a"


def test_missing_costs_or_scores_are_refused_with_the_fix() -> None:
    with pytest.raises(RoutingDataError, match="lacks some costs; estimate them"):
        evaluate(paper_dataset(costs=False), PREDICTED)
    rows = [
        Row(id="x", prompt="x", scores={"a": 1.0, "b": 0.0}, costs={"a": 1.0, "b": 1.0}),
        Row(id="y", prompt="y", scores={"a": 1.0}, costs={"a": 1.0}),
    ]
    with pytest.raises(RoutingDataError, match="no true score on some prompts for b"):
        evaluate(from_rows(rows), np.zeros((2, 2)))
    with pytest.raises(RoutingDataError, match="predictions have shape"):
        evaluate(paper_dataset(), PREDICTED[:3])


def test_align_predictions_follows_the_router_model_order() -> None:
    ds, pred = align_predictions(paper_dataset(), ["strong", "weak"], PREDICTED[:, ::-1])
    assert ds.models == ["strong", "weak"]
    report = evaluate(ds, pred)
    assert report["router"]["aiq"] == pytest.approx(0.875)
    with pytest.raises(RoutingDataError, match="'mid' not in the dataset"):
        align_predictions(paper_dataset(), ["mid", "weak"], PREDICTED)


@pytest.mark.parametrize("log_cost", [False, True])
def test_plot_writes_a_png(tmp_path: Path, log_cost: bool) -> None:
    pytest.importorskip("matplotlib")
    report = evaluate(paper_dataset(), PREDICTED)
    write_report(tmp_path / "r.json", report)
    again = json.loads((tmp_path / "r.json").read_text())
    out = plot_report(again, tmp_path / "plots" / "curve.png", log_cost=log_cost)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
