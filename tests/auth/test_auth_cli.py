"""``polyroute keys``: the newcomer's path from the command line, against a real store."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from polyroute.cli.main import app


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "polyroute.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "store": {"database_url": f"sqlite:///{tmp_path / 'p.db'}"},
                "providers": {"up": {"api": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                "models": [{"name": "echo", "provider": "up"}],
            }
        )
    )
    return path


def test_create_prints_the_secret_alone_on_its_last_line(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    runner = CliRunner()
    made = runner.invoke(
        app,
        ["keys", "create", "--config", config, "--budget", "0.01", "--period", "daily",
         "--rpm", "10", "--tpm", "1000", "--parallel", "2", "--models", "echo,other",
         "--expires", "30d", "--alias", "newcomer"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("pr_") and " " not in secret
    shown = runner.invoke(app, ["keys", "show", "newcomer", "--config", config])
    data = json.loads(shown.stdout)
    assert (data["budget_usd"], data["period"], data["rpm"], data["parallel"]) == (
        0.01,
        "daily",
        10,
        2,
    )
    assert data["models"] == ["echo", "other"] and data["remaining_usd"] == 0.01
    assert secret not in shown.stdout
    listed = runner.invoke(app, ["keys", "list", "--config", config])
    assert "newcomer" in listed.stdout and "active" in listed.stdout
    updated = runner.invoke(app, ["keys", "update", "newcomer", "--config", config, "--rpm", "20", "--rotate"])  # fmt: skip
    assert updated.exit_code == 0, updated.output
    assert updated.stdout.strip().splitlines()[-1] != secret
    assert runner.invoke(app, ["keys", "revoke", "newcomer", "--config", config]).exit_code == 0
    assert "newcomer" not in runner.invoke(app, ["keys", "list", "--config", config]).stdout


def test_bad_options_name_the_field(tmp_path: Path) -> None:
    made = CliRunner().invoke(
        app, ["keys", "create", "--config", str(_config(tmp_path)), "--period", "hourly"]
    )
    assert made.exit_code == 2
    assert "period" in made.output
