"""Help and error texts print what they say: square brackets are text, not markup."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polyroute.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["serve", "--help"], "[default: 127.0.0.1]"),
        (["serve", "--help"], "[default: 8000]"),
        (["train", "--help"], "[default: the best measured]"),
        (["train", "--help"], "[default: ~/.cache/polyroute/embeddings]"),
    ],
)
def test_help_keeps_square_brackets(args: list[str], text: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert text in " ".join(result.output.replace("│", " ").split())


def test_the_missing_plot_hint_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = Path(__file__).parents[1] / "fixtures" / "local_bench.jsonl"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    args = ["leaderboard", str(results), "--plot", str(tmp_path / "p.png")]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 2
    assert "pip install 'polyroute[plot]'" in result.output
