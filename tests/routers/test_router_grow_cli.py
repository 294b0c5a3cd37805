"""``polyroute router anchors | add-model | onboard`` with the real embedding on a tiny dataset,
and onboard through a real OpenAI-compatible server (the echo upstream)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tests.routers.test_router_mf import NEWCOMER, TOPICS, specialist_data
from tests.support.echo_upstream import EchoUpstream
from typer.testing import CliRunner

from polyroute.cli.main import app
from polyroute.routing.persist import load_router

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def said(result: Any) -> str:
    return " ".join(result.output.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mf router on 3 specialists, 8 prompts a topic, whose anchors can be graded: the
    questions file answers "question" (in every prompt: the echo upstream gets it right) for
    math and code, "sonnet" (never echoed) for poems; so an echo model is a NEWCOMER."""
    tmp = tmp_path_factory.mktemp("grow")
    data = specialist_data(8)
    data.with_costs(None).save(tmp / "train.jsonl")  # type: ignore[arg-type]
    (tmp / "prices.json").write_text(
        json.dumps({"mathy": [1, 1], "cody": [4, 4], "poet": [0.1, 0.1]})
    )
    with (tmp / "questions.jsonl").open("w") as f:
        for id_, prompt, task in zip(data.ids, data.prompts, data.tasks, strict=True):
            answer = "sonnet" if task == "poem" else "question"
            row = {"id": id_, "prompt": prompt, "answer": answer, "grader": "contains"}
            f.write(json.dumps(row) + "\n")
    out = tmp / "router"
    result = invoke(
        "train", "--data", str(tmp / "train.jsonl"), "--out", str(out), "--router", "mf",
        "--prices", str(tmp / "prices.json"), "--questions", str(tmp / "questions.jsonl"),
        "--cache-dir", str(tmp / "cache"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trained a mf router on 24 prompts × 3 models" in said(result)
    return out


def test_anchors_are_gradable_prompts_from_every_task(trained: Path, tmp_path: Path) -> None:
    result = invoke("router", "anchors", "--router", str(trained), "--count", "6", "--out",
                    str(tmp_path / "a.jsonl"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 6 anchors from 3 task(s)" in said(result)
    assert "(6 with reference answers)" in said(result)
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert sorted(r["task"] for r in rows) == sorted(TOPICS * 2)
    assert all(r["grader"] == "contains" and r["prompt"].endswith(r["id"][1:]) is not None
               for r in rows)  # fmt: skip
    # The file is a bench suite as it stands.
    from polyroute.bench.suites import load_user_jsonl

    suite = load_user_jsonl(tmp_path / "a.jsonl")
    assert [q.id for q in suite.questions] == [r["id"] for r in rows]


def test_add_model_from_scored_anchors_saves_a_router_that_routes_to_it(
    trained: Path, tmp_path: Path
) -> None:
    invoke("router", "anchors", "--router", str(trained), "-n", "12", "--out",
           str(tmp_path / "a.jsonl"))  # fmt: skip
    anchors = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    results = tmp_path / "results.jsonl"
    with results.open("w") as f:
        for a in anchors:
            score = NEWCOMER[TOPICS.index(a["task"])]
            # The prompt here is ignored for anchors: the router embeds its own training text.
            row = {"id": a["id"], "prompt": "asked", "scores": {"newcomer": score}}
            f.write(json.dumps(row) + "\n")
    before = (trained / "manifest.json").read_text()
    r2 = tmp_path / "r2"
    result = invoke(
        "router", "add-model", "--router", str(trained), "--data", str(results),
        "--model", "newcomer", "--input-price", "0.5", "--output-price", "0.5", "--out", str(r2),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "added newcomer from 12 scored prompts (12 of them anchors" in said(result)
    assert "now scores 4 models" in said(result)
    assert (trained / "manifest.json").read_text() == before  # --out: the original stays
    router = load_router(r2)
    assert router.models[-1] == "newcomer" and router.prices["newcomer"] == (0.5, 0.5)
    predicted = router.predict([f"{t} question number 77" for t in TOPICS])[:, -1]
    assert predicted[0] > predicted[2] and predicted[1] > predicted[2]
    assert json.loads((r2 / "manifest.json").read_text())["anchors"]["count"] == 24
    result = invoke("route", "--router", str(r2), "--lambda", "0", "math question number 5")
    assert result.exit_code == 0, result.output
    assert "newcomer" in result.output


def test_onboard_asks_a_served_model_the_anchors_and_adds_it(
    trained: Path, tmp_path: Path, echo_upstream: EchoUpstream
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {"up": {"api": "openai", "base_url": echo_upstream.base_url}},
                "models": [
                    {"name": "newcomer", "provider": "up", "input_price": 0.2,
                     "output_price": 0.4},
                ],
            }
        )
    )  # fmt: skip
    out = tmp_path / "onboarded"
    work = tmp_path / "work"
    result = invoke("router", "onboard", "--router", str(trained), "--model", "newcomer",
                    "--count", "9", "--config", str(config), "--work", str(work),
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "newcomer answered 9 anchors" in said(result)
    assert "added newcomer from 9 scored prompts (9 of them anchors" in said(result)
    rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    graded = {r["task"]: r["scores"]["newcomer"] for r in rows}
    assert graded == {"math": 1.0, "code": 1.0, "poem": 0.0}  # real answers, really graded
    router = load_router(out)
    assert router.prices["newcomer"] == (0.2, 0.4)  # from the config
    predicted = router.predict([f"{t} question number 55" for t in TOPICS])[:, -1]
    assert predicted[0] > predicted[2] and predicted[1] > predicted[2]


def test_mistakes_get_a_message_that_names_the_fix(trained: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "x", "prompt": "p", "scores": {"other": 1.0}}) + "\n")
    cases = [
        (["anchors", "--router", str(tmp_path / "nope"), "--out", "a.jsonl"],
         "no such directory"),
        (["anchors", "--router", str(trained), "-n", "500", "--out", str(tmp_path / "a")],
         "ask for at most 24"),
        (["add-model", "--router", str(trained), "--data", str(data), "--model", "newbie"],
         "holds no score for 'newbie'; it scores: other"),
        (["add-model", "--router", str(trained), "--data", str(data), "--model", "other",
          "--input-price", "1"], "give both --input-price and --output-price"),
        (["add-model", "--router", str(trained), "--data", str(tmp_path / "none.jsonl"),
          "--model", "x"], "cannot read"),
        (["onboard", "--router", str(trained), "--model", "ghost", "--config",
          str(_config(tmp_path))], "'ghost' is not a model of the config"),
    ]  # fmt: skip
    for args, message in cases:
        result = invoke("router", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in said(result), (args, result.output)
        assert "Traceback" not in result.output
    data.write_text(json.dumps({"id": "x", "prompt": "p", "scores": {"poet": 1.0}}) + "\n")
    result = invoke("router", "add-model", "--router", str(trained), "--data", str(data),
                    "--model", "poet")  # fmt: skip
    assert result.exit_code == 2 and "pass --replace" in said(result)


def test_routers_that_cannot_grow_say_what_to_do(trained: Path, tmp_path: Path) -> None:
    data = specialist_data(4)
    data.save(tmp_path / "train.jsonl")
    knn = tmp_path / "knn"
    result = invoke("train", "--data", str(tmp_path / "train.jsonl"), "--out", str(knn),
                    "--router", "knn", "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert result.exit_code == 0, result.output
    scored = tmp_path / "s.jsonl"
    scored.write_text(json.dumps({"id": "p0", "prompt": "p", "scores": {"new": 1.0}}) + "\n")
    result = invoke("router", "add-model", "--router", str(knn), "--data", str(scored),
                    "--model", "new")  # fmt: skip
    assert result.exit_code == 2
    assert "holds a 'knn' router, which cannot take a new model" in said(result)
    # A router trained without questions has anchors, but none it can grade.
    result = invoke("router", "anchors", "--router", str(knn), "-n", "3", "--out",
                    str(tmp_path / "a.jsonl"))  # fmt: skip
    assert result.exit_code == 0 and "(0 with reference answers)" in said(result)
    mf = tmp_path / "mf"
    invoke("train", "--data", str(tmp_path / "train.jsonl"), "--out", str(mf), "--router", "mf",
           "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    result = invoke("router", "onboard", "--router", str(mf), "--model", "served", "--config",
                    str(_config(tmp_path)))  # fmt: skip
    assert result.exit_code == 2
    assert "holds no reference answers" in said(result)
    assert np.isfinite(load_router(mf).predict(["math"])).all()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": {"up": {"api": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                "models": [{"name": "served", "provider": "up"}],
            }
        )
    )
    return path
