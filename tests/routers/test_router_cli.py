"""``polyroute train`` and ``polyroute route``, with the real embedding model on a tiny dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.routers.router_fakes import topic_dataset
from typer.testing import CliRunner

from polyroute.cli.main import app
from polyroute.routing_eval.threads import default_workers
from polyroute.routing_eval.train import BEST_KIND

runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    dataset = topic_dataset(n_per_topic=8)
    path = tmp_path / "train.jsonl"
    dataset.with_costs(None).save(path)  # type: ignore[arg-type]
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"cheap": [0.1, 0.1], "coder": [0.3, 0.3], "strong": [1, 1]}))
    return path, prices


def train(tmp_path: Path, data: tuple[Path, Path], *extra: str) -> Path:
    out = tmp_path / "router"
    args = ["train", "--data", str(data[0]), "--out", str(out), "--prices", str(data[1])]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache"), *extra])
    assert result.exit_code == 0, result.output
    kind = extra[extra.index("--router") + 1] if "--router" in extra else BEST_KIND
    assert f"trained a {kind} router on 24 prompts × 3 models" in result.output
    # off a terminal nothing is wrapped at 80 columns: the path stays whole on its line
    assert f"→ {out}\n" in result.output and len(str(out)) > 40
    # not a terminal (a log, CI): each step is a line, not a spinner that draws nothing
    assert "[0 s] training on 24 prompts × 3 models…\n" in result.output
    at_once = f"({default_workers()} at a time)…"
    assert f"more without one fold each for the knob's calibration {at_once}" in result.output
    return out


def test_train_then_route(tmp_path: Path, data: tuple[Path, Path]) -> None:
    out = train(tmp_path, data, "--router", "knn", "--max-cost-fraction", "0.5")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["knob"] == {"max_cost_fraction": 0.5}
    # The default embedding: MiniLM's static token table with hashed n-grams, not its encoder.
    assert manifest["embedding"]["name"] == "minilm-lexical"
    assert manifest["embedding"]["model"].startswith("sentence-transformers/all-MiniLM-L6-v2 (")
    result = runner.invoke(app, ["route", "--router", str(out), "poem question number 99"])
    assert result.exit_code == 0, result.output
    assert "predicted quality" in result.output
    for model in ("cheap", "coder", "strong"):
        assert model in result.output
    result = runner.invoke(app, ["route", "--router", str(out), "--lambda", "0", "math question"])
    assert result.exit_code == 0, result.output
    assert "λ = 0" in result.output


def test_the_full_encoder_is_an_option_and_its_routers_load_with_it(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    out = train(tmp_path, data, "--router", "knn", "--embedding", "minilm")
    embedding = json.loads((out / "manifest.json").read_text())["embedding"]
    assert embedding["name"] == "minilm"
    assert embedding["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert list((tmp_path / "cache").glob("*/*.npz")), "the encoder's vectors are cached"
    result = runner.invoke(app, ["route", "--router", str(out), "poem question number 99"])
    assert result.exit_code == 0, result.output
    assert "predicted quality" in result.output


def test_without_a_knob_train_matches_the_strongest_model(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    out = train(tmp_path, data)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["knob"] == {"min_quality_fraction": 1.0}
    assert manifest["kind"] == BEST_KIND == "mf"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "missing.jsonl", "--out", "x"], "cannot read"),
        (
            ["train", "--data", "d", "--out", "x", "--lambda", "1", "--max-cost-fraction", "0.3"],
            "one of --lambda",
        ),
        (["train", "--data", "d", "--out", "x", "--min-quality-fraction", "-1"], "> 0"),
        (["train", "--data", "d", "--out", "x", "--embedding", "bert"], "unknown embedding"),
        (["route", "--router", ".", "hello"], "not a trained router"),
        (["route", "--router", "nowhere", "hello"], "no such directory"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_train_without_prices_for_costless_data_says_what_to_pass(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    args = ["train", "--data", str(data[0]), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2
    assert "--prices" in result.output and "--lambda 0" in result.output
    # Quality alone needs no cost: it trains, and says λ was not calibrated on anything.
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache"), "--lambda", "0"])
    assert result.exit_code == 0, result.output
    assert "λ = 0 as given (the data has no costs to calibrate it on)" in result.output


def test_train_prices_models_the_catalog_knows_without_a_prices_file(tmp_path: Path) -> None:
    """Data named as providers name models (as RouteLLM's is): the catalog prices them."""
    names = {"cheap": "gpt-4o-mini", "coder": "gpt-4o", "strong": "gpt-4-1106-preview"}
    plain = tmp_path / "plain.jsonl"
    topic_dataset(n_per_topic=8).with_costs(None).save(plain)  # type: ignore[arg-type]
    rows = [json.loads(line) for line in plain.read_text().splitlines()]
    path = tmp_path / "named.jsonl"
    path.write_text(
        "".join(
            json.dumps({**r, "scores": {names[m]: v for m, v in r["scores"].items()}}) + "\n"
            for r in rows
        )
    )
    out = tmp_path / "r"
    args = ["train", "--data", str(path), "--out", str(out), "--router", "knn"]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "prices from the model catalog" in result.output
    assert "gpt-4-1106-preview = gpt-4-1106-preview at openai (10/30)" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lambda"] > 0  # calibrated on the costs the catalog's prices give


def test_a_router_trained_on_costs_alone_still_routes_with_its_knob(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    """Data with costs but no price list (as `import-data` writes it): the router infers the
    prices its costs imply, so `route` can weigh cost at the λ it was saved with."""
    from polyroute.routing_eval.costs import fill_missing_costs, load_prices
    from polyroute.routing_eval.dataset import RoutingDataset

    costed, _ = fill_missing_costs(RoutingDataset.load(data[0]), load_prices(data[1]))
    costed.save(tmp_path / "costed.jsonl")
    out = tmp_path / "router"
    args = ["train", "--data", str(tmp_path / "costed.jsonl"), "--out", str(out), "--router", "knn"]
    result = runner.invoke(app, [*args, "--max-cost-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lambda"] > 0
    # The prompts are all about as long, so input and output prices blur; what a live
    # request is charged must come back: the data's own cost of each prompt.
    from polyroute.routing.pricing import prompt_cost
    from polyroute.routing_eval.costs import default_token_counter

    tokens = default_token_counter().count(costed.prompts)
    assert costed.costs is not None
    for j, model in enumerate(costed.models):
        price = (manifest["prices"][model]["input"], manifest["prices"][model]["output"])
        for i, n in enumerate(tokens):
            assert prompt_cost(n, price, 256) == pytest.approx(costed.costs[i, j], rel=1e-3)
    assert manifest["training"]["prices"].startswith("inferred")
    result = runner.invoke(app, ["route", "--router", str(out), "poem question number 99"])
    assert result.exit_code == 0, result.output
    assert "unknown" not in result.output  # every model priced
    # eval reports the router where it serves (its own λ), not only at λ = 0.
    report = tmp_path / "r.json"
    ev = [
        "eval",
        "--router",
        str(out),
        "--data",
        str(tmp_path / "costed.jsonl"),
        "--report",
        str(report),
        "--predictions",
        str(tmp_path / "p.jsonl"),
    ]
    result = runner.invoke(app, ev)
    assert result.exit_code == 0, result.output
    assert f"router as saved (λ = {manifest['lambda']:.4g})" in result.output
    served = json.loads(report.read_text())["router"]["at_lambda"]
    assert served["lambda"] == pytest.approx(manifest["lambda"])


def test_train_wide_bits_sets_mf_s_wide_term_and_says_when_it_does_not_apply(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    out = train(tmp_path, data, "--wide-bits", "0")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["wide_bits"] == 0
    seconds = manifest["training"]["seconds"]
    assert seconds["total"] >= seconds["fitting"] + seconds["onboarding"] - 0.2  # all of it
    args = ["train", "--data", str(data[0]), "--out", str(tmp_path / "x"), "--prices", str(data[1])]
    result = runner.invoke(app, [*args, "--router", "knn", "--wide-bits", "4"])
    assert result.exit_code == 2 and "option of the mf router" in result.output
    result = runner.invoke(app, [*args, "--wide-bits", "30"])
    assert result.exit_code == 2 and "0..20" in result.output


def test_train_task_heads_are_on_by_default_and_an_mf_option_recorded_in_the_manifest(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    params = json.loads((train(tmp_path, data) / "manifest.json").read_text())["params"]
    assert params["task_heads"] is True and params["task_weight"] == 0.3
    out = train(tmp_path / "off", data, "--no-task-heads")
    assert json.loads((out / "manifest.json").read_text())["params"]["task_heads"] is False
    args = ["train", "--data", str(data[0]), "--out", str(tmp_path / "x"), "--prices", str(data[1])]
    result = runner.invoke(app, [*args, "--router", "knn", "--no-task-heads"])
    assert (
        result.exit_code == 2 and "--no-task-heads is an option of the mf router" in result.output
    )


def test_train_prior_strength_given_skips_the_onboarding_simulation(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    simulating = "choosing how new models are added"
    args = ["train", "--data", str(data[0]), "--prices", str(data[1])]
    args += ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "tuned")])
    assert result.exit_code == 0 and simulating in result.output, result.output
    tuned = json.loads((tmp_path / "tuned" / "manifest.json").read_text())["training"]
    assert "onboarding" in tuned["seconds"]  # ran (24 prompts are too few to choose on)

    result = runner.invoke(app, [*args, "--out", str(tmp_path / "given"), "--prior-strength", "2"])
    assert result.exit_code == 0 and simulating not in result.output, result.output
    manifest = json.loads((tmp_path / "given" / "manifest.json").read_text())
    assert manifest["params"]["prior_strength"] == 2.0
    assert manifest["training"]["onboarding"]["simulated"].startswith("no")
    assert "onboarding" not in manifest["training"]["seconds"]

    bad = [*args, "--out", str(tmp_path / "x")]
    result = runner.invoke(app, [*bad, "--router", "knn", "--prior-strength", "2"])
    assert (
        result.exit_code == 2 and "--prior-strength is an option of the mf router" in result.output
    )
    result = runner.invoke(app, [*bad, "--prior-strength", "0"])
    assert result.exit_code == 2 and "must be > 0" in result.output
