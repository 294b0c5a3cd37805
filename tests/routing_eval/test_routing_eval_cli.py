"""`polyroute import-data` and `polyroute eval` as a user meets them: files in, files out,
and on bad input one line that names the problem and the fix (exit 2, no traceback)."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from polyroute.cli.routing_data import register
from polyroute.routing_eval.dataset import RoutingDataset

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keeps subcommand names even with few commands
        pass

    return app


def invoke(*args: str | Path) -> tuple[int, str]:
    r = runner.invoke(cli(), [str(a) for a in args])
    assert "Traceback" not in r.output
    return r.exit_code, r.output


class FakeRouter:
    """Predicts from a table keyed by prompt: the seam `persist.load_router` returns."""

    def __init__(
        self,
        models: list[str],
        table: dict[str, list[float]],
        prices: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self.models = models
        self.table = table
        self.lam = 0.0  # the λ it was saved with
        self.prices = prices or {}  # as saved at training: given or inferred

    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        return np.array([self.table[p] for p in prompts])


@pytest.fixture
def fake_persist(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeRouter]:
    """Replaces polyroute.routing.persist with one that serves routers from a dict."""
    routers: dict[str, FakeRouter] = {}
    module = types.ModuleType("polyroute.routing.persist")

    def load_router(path: Path) -> FakeRouter:
        if path.name not in routers:
            raise ValueError("not a router directory")
        return routers[path.name]

    module.load_router = load_router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "polyroute.routing.persist", module)
    return routers


def test_import_routerbench_then_prices_fill_the_gap(tmp_path: Path) -> None:
    code, output = invoke(
        "import-data",
        "--format",
        "routerbench",
        FIXTURES / "routerbench_small.csv",
        "--out",
        tmp_path / "rb.jsonl",
    )
    assert code == 0, output
    assert "wrote 3 prompts × 2 models" in output and "3 with a task" in output
    assert "some costs are missing; pass --prices" in output
    (tmp_path / "p.json").write_text(json.dumps({"model-a": [1, 1], "model-b": [5, 5]}))
    code, output = invoke(
        "import-data",
        "-f",
        "routerbench",
        FIXTURES / "routerbench_small.csv",
        "-o",
        tmp_path / "rb.jsonl",
        "--prices",
        tmp_path / "p.json",
        "--output-tokens",
        "100",
    )
    assert code == 0, output
    assert "1 costs estimated from prices" in output and "100 output tokens assumed" in output
    assert RoutingDataset.load(tmp_path / "rb.jsonl").has_all_costs


def test_import_errors_are_one_clear_line(tmp_path: Path) -> None:
    code, output = invoke("import-data", "-f", "csv", FIXTURES / "routellm_small.csv", "-o", "x")
    assert code == 2 and "unknown format 'csv'" in output and "routellm" in output
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,m\nq,[True]\n")
    code, output = invoke("import-data", "-f", "routellm", bad, "-o", tmp_path / "o.jsonl")
    assert code == 2
    assert f"{bad}:2: column 'm': expected True or False, got '[True]'" in output
    code, output = invoke("import-data", "-f", "routellm", tmp_path / "nope.csv", "-o", "x")
    assert code == 2 and "nope.csv: no such file" in output


def write_dataset(path: Path, rows: list[tuple[str, list[float]]]) -> Path:
    lines = [
        json.dumps(
            {
                "id": f"r{i}",
                "prompt": p,
                "scores": {"weak": q[0], "strong": q[1]},
                "costs": {"weak": 1.0, "strong": 3.0},
            }
        )
        for i, (p, q) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


PAPER = [("p1", [1.0, 1.0]), ("p2", [0.0, 1.0]), ("p3", [0.0, 1.0]), ("p4", [1.0, 0.0])]
TABLE: dict[str, list[float]] = {
    "p1": [0.5, 0.6],
    "p2": [0.5, 0.9],
    "p3": [0.5, 0.8],
    "p4": [0.5, 0.3],
    "x": [0, 0],
}


def test_eval_writes_report_predictions_and_plot(
    tmp_path: Path, fake_persist: dict[str, FakeRouter]
) -> None:
    pytest.importorskip("matplotlib")
    fake_persist["knn"] = FakeRouter(["weak", "strong"], TABLE)
    (tmp_path / "knn").mkdir()
    test = write_dataset(tmp_path / "test.jsonl", [*PAPER, ("p2", [0.0, 1.0]), ("x", [1, 1])])
    train = write_dataset(tmp_path / "train.jsonl", [("x", [0.0, 0.0])])
    code, output = invoke(
        "eval",
        "--router",
        tmp_path / "knn",
        "--data",
        test,
        "--report",
        tmp_path / "r.json",
        "--predictions",
        tmp_path / "pred.jsonl",
        "--plot",
        tmp_path / "c.png",
        "--log-cost",
        "--exclude-from",
        train,
    )
    assert code == 0, output
    assert (
        "6 prompts read, 1 duplicates and 1 also in --exclude-from removed: evaluated on 4"
        in output
    )
    assert "APGR 1.3750, CPT(50%) 12.5%, CPT(80%) 20.0%" in output
    assert "matches the best model's quality at 1.5 USD (50% cheaper)" in output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["router"]["aiq"] == pytest.approx(0.875)
    assert report["data"] == {
        "path": str(test),
        "rows_read": 6,
        "duplicates_removed": 1,
        "overlap_removed": 1,
        "rows_evaluated": 4,
    }
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    assert report["cost_unit"] == "USD"
    # bench results can measure cost in seconds: labels follow
    code, output = invoke(
        "eval", "--router", tmp_path / "knn", "--data", test, "--report", tmp_path / "r.json",
        "--predictions", tmp_path / "pred.jsonl", "--exclude-from", train, "--cost-unit", "s",
    )  # fmt: skip
    assert code == 0, output
    assert "avg cost (s)" in output and "quality at 1.5 s (50% cheaper)" in output


def test_eval_bad_input_says_what_to_do(
    tmp_path: Path, fake_persist: dict[str, FakeRouter]
) -> None:
    fake_persist["r"] = FakeRouter(["weak", "mid"], TABLE)
    (tmp_path / "r").mkdir()
    (tmp_path / "broken").mkdir()
    test = write_dataset(tmp_path / "test.jsonl", PAPER)
    args: list[str | Path] = [
        "--report",
        tmp_path / "o.json",
        "--predictions",
        tmp_path / "o.jsonl",
    ]

    code, output = invoke("eval", "--router", tmp_path / "r", "--data", test, *args)
    assert code == 2 and "'mid' not in the dataset; it has: weak, strong" in output

    code, output = invoke("eval", "--router", tmp_path / "none", "--data", test, *args)
    assert code == 2 and "no such router directory" in output

    code, output = invoke("eval", "--router", tmp_path / "broken", "--data", test, *args)
    assert code == 2 and "cannot load the router: not a router directory" in output

    no_costs = tmp_path / "nc.jsonl"
    no_costs.write_text(json.dumps({"id": "a", "prompt": "p1", "scores": {"weak": 1, "mid": 0}}))
    code, output = invoke("eval", "--router", tmp_path / "r", "--data", no_costs, *args)
    # No cost anywhere (data, router, catalog): quality only, said, never a $0 cost.
    assert code == 0, output
    assert "no cost for weak, mid" in output and "quality only" in output and "--prices" in output
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["costs_known"] is False and report["router"]["cost"] is None
    assert report["single_models"] == {
        "weak": {"quality": 1.0, "cost": None},
        "mid": {"quality": 0.0, "cost": None},
    }
    code, output = invoke(
        "eval", "--router", tmp_path / "r", "--data", no_costs, *args, "--plot", tmp_path / "c.png"
    )  # fmt: skip
    assert code == 2 and "--plot draws cost against quality" in output
    assert not (tmp_path / "c.png").exists()
    (tmp_path / "p.json").write_text(json.dumps({"weak": [1, 1], "mid": [2, 2]}))
    code, output = invoke(
        "eval",
        "--router",
        tmp_path / "r",
        "--data",
        no_costs,
        "--prices",
        tmp_path / "p.json",
        *args,
    )
    assert code == 0, output
    assert "2 costs estimated" in output

    code, output = invoke("eval", "--router", tmp_path / "r", "--data", tmp_path / "x", *args)
    assert code == 2 and "cannot read" in output


def test_plot_without_matplotlib_says_how_to_get_it(
    tmp_path: Path, fake_persist: dict[str, FakeRouter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    fake_persist["knn"] = FakeRouter(["weak", "strong"], TABLE)
    (tmp_path / "knn").mkdir()
    test = write_dataset(tmp_path / "test.jsonl", PAPER)
    code, output = invoke(
        "eval",
        "--router",
        tmp_path / "knn",
        "--data",
        test,
        "--report",
        tmp_path / "r.json",
        "--predictions",
        tmp_path / "p.jsonl",
        "--plot",
        tmp_path / "c.png",
    )
    assert code == 2
    assert "plotting needs matplotlib: pip install matplotlib; or leave out --plot" in output
    assert (tmp_path / "r.json").is_file()


def test_the_polyroute_command_has_both() -> None:
    from polyroute.cli.main import app

    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "import-data" in r.output and "eval" in r.output
    r = runner.invoke(app, ["eval", "--help"])
    for option in ("--router", "--data", "--report", "--predictions", "--plot", "--exclude-from"):
        assert option in r.output


def test_split_data_splits_each_task_and_keeps_repeated_prompts_together(tmp_path: Path) -> None:
    rows = [
        {"id": f"{task}{i}", "prompt": f"{task} q{i % 8}", "scores": {"a": 1.0}, "task": task}
        for task, n in (("big", 20), ("small", 10))
        for i in range(n)
    ]
    data = tmp_path / "all.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, output = invoke(
        "split-data", "--data", data, "--train", tmp_path / "tr.jsonl", "--test", tmp_path / "te.jsonl",
        "--test-fraction", "0.25", "--seed", "3",
    )  # fmt: skip
    assert code == 0, output
    train = RoutingDataset.load(tmp_path / "tr.jsonl")
    test = RoutingDataset.load(tmp_path / "te.jsonl")
    assert sorted(train.ids + test.ids) == sorted(r["id"] for r in rows)  # nothing lost
    # big has 8 distinct prompts (2 of them go to test), small has 8 too: 2 each
    assert {t: test.tasks.count(t) > 0 for t in ("big", "small")} == {"big": True, "small": True}
    assert not set(train.prompts) & set(test.prompts)  # a prompt is on one side only
    assert len({p for p, t in zip(test.prompts, test.tasks, strict=True) if t == "big"}) == 2
    code, output = invoke(
        "split-data", "--data", data, "--train", tmp_path / "a", "--test", tmp_path / "b",
        "--test-fraction", "1",
    )  # fmt: skip
    assert code == 2 and "(0, 1)" in output


def _costless(path: Path, names: tuple[str, str]) -> Path:
    weak, strong = names
    rows = [
        {"id": f"r{i}", "prompt": p, "scores": {weak: q[0], strong: q[1]}}
        for i, (p, q) in enumerate(PAPER)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_prices_missing_costs_from_the_router_then_the_catalog(
    tmp_path: Path, fake_persist: dict[str, FakeRouter]
) -> None:
    out = ["--report", tmp_path / "o.json", "--predictions", tmp_path / "o.jsonl"]
    # 1. the router's own prices (given or inferred when it was trained)
    fake_persist["own"] = FakeRouter(
        ["weak", "strong"], TABLE, prices={"weak": (1.0, 1.0), "strong": (3.0, 3.0)}
    )
    (tmp_path / "own").mkdir()
    data = _costless(tmp_path / "a.jsonl", ("weak", "strong"))
    code, output = invoke("eval", "--router", tmp_path / "own", "--data", data, *out)
    assert code == 0, output
    assert "estimated from the router's own prices" in output
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["costs_known"] is True and report["router"]["aiq"] is not None
    # 2. names the model catalog knows, on a router with no prices
    names = ("gpt-4o-mini", "gpt-4-1106-preview")
    fake_persist["named"] = FakeRouter(list(names), TABLE)
    (tmp_path / "named").mkdir()
    data = _costless(tmp_path / "b.jsonl", names)
    code, output = invoke("eval", "--router", tmp_path / "named", "--data", data, *out)
    assert code == 0, output
    assert "prices from the model catalog" in output and "gpt-4o-mini = gpt-4o-mini" in output
    report = json.loads((tmp_path / "o.json").read_text())
    mini, gpt4 = (report["single_models"][m]["cost"] for m in names)
    assert report["costs_known"] is True and 0 < mini < gpt4
    assert report["two_model"]["apgr"] == pytest.approx(1.375)  # the paper case's
