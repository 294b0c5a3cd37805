"""`polyroute bench` and `polyroute leaderboard` as a user runs them: through the real pool."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.bench.bench_fakes import adder, write_jsonl
from tests.support.echo_upstream import EchoUpstream
from typer.testing import CliRunner

from polyroute.cli.main import app
from polyroute.config import ModelConfig
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth, Provider

cli = CliRunner()


class AdderProvider(Provider):
    """An in-process provider: model 'good' adds right, any other adds one too many."""

    kind = "test-bench-adder"

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        text = adder(model.name, body["messages"][-1]["content"])
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncIterator[JSON]:
        text = adder(model.name, body["messages"][-1]["content"])
        yield {"choices": [{"index": 0, "delta": {"content": text}}]}
        usage = {"prompt_tokens": 12, "completion_tokens": 5}
        yield {"choices": [], "usage": usage}

    async def health(self, model: ModelConfig) -> ModelHealth:
        return ModelHealth(True)


PROVIDERS.add(AdderProvider.kind, AdderProvider)


def write_config(path: Path, providers: dict[str, Any], models: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"providers": providers, "models": models}))
    return path


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    config = write_config(
        tmp_path / "polyroute.yaml",
        {"fake": {"kind": AdderProvider.kind}},
        [
            {"name": "good", "provider": "fake", "input_price": 1.0, "output_price": 2.0},
            {"name": "bad", "provider": "fake", "input_price": 0.0, "output_price": 0.0},
        ],
    )
    suite = write_jsonl(
        tmp_path / "adds.jsonl",
        [
            {"id": f"q{i}", "prompt": f"What is {i} plus {i}?", "answer": 2 * i,
             "grader": "numeric", "task": "even" if i % 2 == 0 else "odd"}
            for i in range(6)
        ],
    )  # fmt: skip
    return config, suite


def bench(*args: str) -> Any:
    return cli.invoke(app, ["bench", *args])


def said(result: Any) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_bench_writes_a_routing_dataset_and_resumes(
    tmp_path: Path, setup: tuple[Path, Path]
) -> None:
    config, suite = setup
    out = tmp_path / "results.jsonl"
    r = bench("--suite", str(suite), "--models", "good,bad", "--out", str(out), "-c", str(config))
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    row = rows[1]
    assert set(row) == {"id", "prompt", "task", "scores", "costs", "details"}
    assert row["id"] == "q1" and row["prompt"] == "What is 1 plus 1?" and row["task"] == "odd"
    assert row["scores"] == {"good": 1.0, "bad": 0.0}
    assert row["costs"] == {"good": pytest.approx((12 * 1 + 5 * 2) / 1e6), "bad": 0.0}
    details = row["details"]["good"]
    assert details["answer"] == "The answer is 2." and details["input_tokens"] == 12
    assert details["output_tokens"] == 5 and details["ttft_s"] is not None
    assert (tmp_path / "results.answers.jsonl").is_file()

    again = bench(
        "--suite", str(suite), "--models", "good,bad", "--out", str(out), "-c", str(config)
    )
    assert again.exit_code == 0
    assert "0 new answers, 12 already in" in again.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_cost_measure_latency_and_tokens(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    config, suite = setup
    out = tmp_path / "r.jsonl"
    args = ["--suite", str(suite), "--out", str(out), "-c", str(config), "--limit", "2"]
    assert bench(*args, "--cost-measure", "tokens").exit_code == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["costs"] == {"good": 5.0, "bad": 5.0}
    assert bench(*args, "--cost-measure", "latency").exit_code == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["costs"]["bad"] == row["details"]["bad"]["latency_s"]


def test_leaderboard_tables_and_plot(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    config, suite = setup
    out = tmp_path / "results.jsonl"
    assert bench("-s", str(suite), "-o", str(out), "-c", str(config)).exit_code == 0
    plot = tmp_path / "plot.png"
    r = cli.invoke(app, ["leaderboard", str(out), "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    assert "good" in r.output and "100.0%" in r.output and "0.0%" in r.output
    assert "Quality per task" in r.output and "even" in r.output and "odd" in r.output
    assert "oracle" in r.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "good,ghost"], "unknown model(s) ghost; the config has: good, bad"),
        (["--suite", "nope:x"], "unknown suite 'nope:x'"),
        (["--suite", "missing.jsonl"], "suite file missing.jsonl does not exist"),
        (["--grader", "fuzzy"], "unknown grader 'fuzzy'; known: choice, contains"),
    ],
)
def test_bench_bad_input_says_what_and_how(
    tmp_path: Path, setup: tuple[Path, Path], args: list[str], message: str
) -> None:
    config, suite = setup
    base = {"--suite": str(suite), "--out": str(tmp_path / "o.jsonl"), "-c": str(config)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    r = bench(*[x for kv in base.items() for x in kv])
    assert r.exit_code == 2
    assert message in said(r)
    assert "Traceback" not in r.output


def test_bench_without_suite_or_out(tmp_path: Path) -> None:
    assert "name a suite with --suite" in said(bench("--out", "x.jsonl"))
    assert "--out RESULTS.jsonl" in said(bench("--suite", "x.jsonl"))


def test_bench_with_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("models: [{name: a, provider: ghost}]")
    r = bench("--suite", "x.jsonl", "--out", "o.jsonl", "--config", str(bad))
    assert r.exit_code == 2 and "provider 'ghost' is not defined" in said(r)


def test_judge_questions_need_a_judge(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    config, _ = setup
    suite = write_jsonl(tmp_path / "j.jsonl", [{"prompt": "p", "answer": "a", "grader": "judge"}])
    r = bench("-s", str(suite), "-o", str(tmp_path / "o.jsonl"), "-c", str(config))
    assert r.exit_code == 2 and "pass --judge MODEL" in said(r)


def test_leaderboard_bad_input(tmp_path: Path) -> None:
    r = cli.invoke(app, ["leaderboard", str(tmp_path / "none.jsonl")])
    assert r.exit_code == 2 and "does not exist; make one with `polyroute bench`" in said(r)
    log = tmp_path / "x.answers.jsonl"
    log.write_text('{"qid": "q", "model": "m"}\n')
    r = cli.invoke(app, ["leaderboard", str(log)])
    assert r.exit_code == 2 and "needs 'scores'" in said(r) and "Traceback" not in r.output


def test_list_suites_from_the_data_dir(tmp_path: Path) -> None:
    task = tmp_path / "bigbench" / "mini" / "task.json"
    task.parent.mkdir(parents=True)
    task.write_text(json.dumps({"examples": [{"input": "?", "target": "x"}]}))
    r = bench("--list-suites", "--data-dir", str(tmp_path))
    assert r.exit_code == 0 and "bigbench:mini" in r.output


def test_bench_through_a_real_openai_compatible_server(
    tmp_path: Path, echo_upstream: EchoUpstream
) -> None:
    """Streaming over HTTP for real: the echo server repeats the prompt, so 'exact' is right;
    its fail-400 model refuses (recorded as wrong), fail-500 keeps failing (not recorded)."""
    config = write_config(
        tmp_path / "c.yaml",
        {"up": {"api": "openai", "base_url": echo_upstream.base_url}},
        [
            {"name": "echo", "provider": "up"},
            {"name": "refused", "provider": "up", "upstream_model": "fail-400"},
            {"name": "broken", "provider": "up", "upstream_model": "fail-500"},
        ],
    )
    suite = write_jsonl(
        tmp_path / "s.jsonl", [{"id": "a", "prompt": "hello there", "answer": "hello there"}]
    )
    out = tmp_path / "o.jsonl"
    r = bench("-s", str(suite), "-o", str(out), "-c", str(config), "--retries", "1")
    assert r.exit_code == 1, r.output  # broken never answered: the row is not complete
    assert "failed: broken on a" in said(r)
    assert "Run the same command again" in said(r)
    log = [json.loads(line) for line in (tmp_path / "o.answers.jsonl").read_text().splitlines()]
    by_model = {a["model"]: a for a in log}
    assert set(by_model) == {"echo", "refused"}
    assert by_model["echo"]["grade"] == 1.0 and by_model["echo"]["ttft_s"] is not None
    assert by_model["echo"]["output_tokens"] == 2
    assert by_model["refused"]["grade"] == 0.0 and "400" in by_model["refused"]["error"]
    r = bench("-s", str(suite), "-o", str(out), "-c", str(config), "-m", "echo,refused")
    assert r.exit_code == 0
    row = json.loads(out.read_text())
    assert row["scores"] == {"echo": 1.0, "refused": 0.0}
    assert row["costs"] == {}  # no prices in this config: unknown, never $0


def test_help_renders_for_both_commands() -> None:
    for command in ("bench", "leaderboard"):
        r = cli.invoke(app, [command, "--help"])
        assert r.exit_code == 0, r.output
        assert "--plot" in r.output if command == "leaderboard" else "--cost-measure" in r.output


def test_results_load_as_a_routing_dataset(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    from polyroute.routing_eval.dataset import RoutingDataset

    config, suite = setup
    out = tmp_path / "results.jsonl"
    assert bench("-s", str(suite), "-o", str(out), "-c", str(config)).exit_code == 0
    data = RoutingDataset.load(out)
    assert data.models == ["good", "bad"] or sorted(data.models) == ["bad", "good"]
    assert data.scores.shape == (6, 2)
