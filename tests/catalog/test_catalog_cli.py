"""``polyroute models``: tables for people, JSON for programs, clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from polyroute.cli.models import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """polyroute"""

    register(app)
    return app


def run(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, ["models", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_lists_the_catalog_as_a_table(app: typer.Typer) -> None:
    result = run(app)
    assert result.exit_code == 0, result.output
    assert "Model" in result.stdout and "Input" in result.stdout
    assert "gpt-4o" in result.stdout and "claude-sonnet-4-5" in result.stdout


def test_json_listing_with_filters(app: typer.Typer) -> None:
    result = run(
        app,
        "--provider", "openai",
        "--capability", "vision",
        "--capability", "tools",
        "--max-input-price", "3",
        "--min-context", "100000",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows, "expected some OpenAI models"
    ids = {r["id"] for r in rows}
    assert "gpt-4o" in ids
    for r in rows:
        assert r["provider"] == "openai"
        assert {"vision", "tools"} <= set(r["capabilities"])
        assert r["prices"]["input"] is not None and r["prices"]["input"] <= 3
        assert r["context_window"] >= 100000


def test_search_filter(app: typer.Typer) -> None:
    rows = json.loads(run(app, "--search", "llama-3.3", "--json").stdout)
    assert rows and all("llama-3.3" in r["id"] or r["family"] == "llama-3.3" for r in rows)


def test_an_unknown_price_never_passes_a_price_filter(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models: [{id: free-lunch, endpoints: [{provider: x, upstream_id: f}]}]\n")
    rows = json.loads(run(app, "--catalog", str(path), "--max-input-price", "0", "--json").stdout)
    assert "free-lunch" not in {r["id"] for r in rows}
    listed = json.loads(run(app, "--catalog", str(path), "--search", "free-lunch", "--json").stdout)
    assert listed[0]["prices"] == {
        "input": None,
        "output": None,
        "cached_input": None,
        "cache_write": None,
        "tiers": [],
    }


def test_show_one_model_with_its_endpoints(app: typer.Typer) -> None:
    result = run(app, "show", "gpt-4o-2024-08-06")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "gpt-4o" in out and "by openai" in out
    assert "'gpt-4o-2024-08-06' selects: openai/gpt-4o-2024-08-06" in out
    assert "azure" in out  # the other endpoints are listed too
    assert "→" in out


def test_show_json(app: typer.Typer) -> None:
    result = run(app, "show", "azure/gpt-4o", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == "gpt-4o"
    assert data["resolved"] == {
        "name": "azure/gpt-4o",
        "provider": "azure",
        "upstream_id": "gpt-4o",
    }
    assert {e["provider"] for e in data["endpoints"]} >= {"openai", "azure"}


def test_group_json_flag_applies_to_show(app: typer.Typer) -> None:
    result = run(app, "--json", "show", "gpt-4o")
    assert json.loads(result.stdout)["id"] == "gpt-4o"


def test_show_unknown_name_fails_with_suggestions(app: typer.Typer) -> None:
    result = run(app, "show", "gpt-4q")
    assert result.exit_code == 1
    assert "no model named 'gpt-4q'" in result.stderr
    assert "did you mean" in result.stderr and "gpt-4o" in result.stderr
    assert result.stdout == ""


def test_show_ambiguous_name_fails_listing_candidates(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models: [{id: twin-a, aliases: [twin]}, {id: twin-b, aliases: [twin]}]\n")
    result = run(app, "show", "twin", "--catalog", str(path))
    assert result.exit_code == 1
    assert "ambiguous" in result.stderr and "twin-a, twin-b" in result.stderr


def test_catalog_file_extends_the_listing(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "models:\n"
        "  - id: house-7b\n"
        "    context_window: 8192\n"
        "    endpoints:\n"
        "      - {provider: vllm, upstream_id: house/7b, prices: {input: 0.1, output: 0.2}}\n"
    )
    rows = json.loads(run(app, "--catalog", str(path), "--provider", "vllm", "--json").stdout)
    assert [(r["id"], r["prices"]["output"]) for r in rows] == [("house-7b", 0.2)]
    shown = run(app, "show", "house/7b", "--catalog", str(path))
    assert shown.exit_code == 0 and "house-7b" in shown.stdout


def test_a_bad_catalog_file_exits_2_naming_the_field(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models: [{id: x, context_window: -5}]\n")
    result = run(app, "--catalog", str(path))
    assert result.exit_code == 2
    assert "models[0] (x) › context_window" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capability", "telepathy"], "unknown capability telepathy"),
        (["--provider", "nowhere"], "unknown provider 'nowhere'"),
    ],
)
def test_bad_filters_exit_2(app: typer.Typer, args: list[str], message: str) -> None:
    result = run(app, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_the_list_fits_80_columns_and_names_are_whole(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["models", "--provider", "anthropic"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output  # long names fold onto a second line, never cut
    assert "T=tools" in " ".join(result.output.split())


def test_served_lists_the_configs_models_with_catalog_values(
    app: typer.Typer, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "providers: {up: {api: openai, base_url: 'http://127.0.0.1:9/v1'}}\n"
        "models:\n"
        "  - {name: mine, provider: up, catalog_id: gpt-4o}\n"
        "  - {name: other, provider: up}\n"
    )
    result = run(app, "--served", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["mine"]["input_price"] == 2.5 and "tools" in rows["mine"]["capabilities"]
    assert rows["other"]["input_price"] is None  # unknown stays unknown
    table = run(app, "--served", "--config", str(config))
    assert table.exit_code == 0 and "mine" in table.output
    bad = run(app, "--served", "--config", str(tmp_path / "no.yaml"))
    assert bad.exit_code == 2 and "does not exist" in bad.output
