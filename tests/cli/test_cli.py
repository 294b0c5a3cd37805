"""The command line as a newcomer meets it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from polyroute import __version__
from polyroute.cli.main import app

runner = CliRunner()


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert r.output.strip() == f"polyroute {__version__}"


def test_help_lists_serve_and_how_to_start() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    assert "serve" in r.output and "http://127.0.0.1:8000/v1" in r.output
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    for option in ("--config", "--host", "--port"):
        assert option in r.output


def test_serve_with_a_bad_config_says_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("models: [{name: a, provider: ghost}]")
    r = runner.invoke(app, ["serve", "--config", str(bad)])
    assert r.exit_code == 2
    assert "provider 'ghost' is not defined" in r.output
    assert "Traceback" not in r.output
