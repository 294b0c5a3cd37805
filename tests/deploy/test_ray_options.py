"""The Ray Serve deployment's options and entry points, checked without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from polyroute.cli.main import app as cli
from polyroute.config import Config
from polyroute.errors import ConfigError

ray_deploy = pytest.importorskip("polyroute.deploy.ray")


def _config(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "polyroute.yaml"
    raw = {
        "providers": {"up": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                             "api_key_env": "UP_KEY"}},
        "models": [{"name": "m", "provider": "up"}],
        **extra,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(raw))
    return path


def test_replicas_fix_the_count_else_autoscaling_aims_at_ongoing_requests() -> None:
    fixed = ray_deploy.RayServeOptions(replicas=2).deployment_options({})
    assert fixed["num_replicas"] == 2
    assert "autoscaling_config" not in fixed
    scaled = ray_deploy.RayServeOptions(
        min_replicas=2, max_replicas=6, target_ongoing_requests=16, upscale_delay_s=1,
        downscale_delay_s=5, look_back_period_s=12,
    ).deployment_options({"A": "1"})  # fmt: skip
    auto = scaled["autoscaling_config"]
    assert (auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (2, 6, 16)
    assert (auto.upscale_delay_s, auto.downscale_delay_s, auto.look_back_period_s) == (1, 5, 12)
    assert scaled["ray_actor_options"]["runtime_env"] == {"env_vars": {"A": "1"}}
    with pytest.raises(ValidationError, match="min_replicas"):
        ray_deploy.RayServeOptions(min_replicas=5, max_replicas=2)


def test_replicas_get_the_polyroute_and_provider_key_variables_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", "admin")
    monkeypatch.setenv("POLYROUTE_CONFIG", "relative.yaml")
    monkeypatch.setenv("UP_KEY", "secret")
    monkeypatch.setenv("EXTRA", "x")
    monkeypatch.setenv("UNRELATED", "no")
    config = Config.model_validate(yaml.safe_load(_config(tmp_path).read_text()))
    options = ray_deploy.RayServeOptions(forward_env=["EXTRA"])
    env = ray_deploy.replica_env(options, config)
    assert env == {"EXTRA": "x", "POLYROUTE_ADMIN_KEY": "admin", "UP_KEY": "secret"}


def test_replicas_on_a_node_share_a_metrics_directory_fresh_per_deploy(tmp_path: Path) -> None:
    given = ray_deploy.RayServeOptions(metrics_dir=tmp_path / "m")
    assert ray_deploy.metrics_dir(given) == tmp_path / "m"
    first, second = (ray_deploy.metrics_dir(ray_deploy.RayServeOptions()) for _ in range(2))
    assert first != second and first.name.startswith("polyroute-metrics-polyroute-")


def test_serve_run_entry_point_reads_polyroute_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ray.serve.deployment import Application

    monkeypatch.chdir(tmp_path)
    _config(tmp_path)
    monkeypatch.setenv("POLYROUTE_CONFIG", "polyroute.yaml")  # relative: made absolute
    assert ray_deploy.config_path(ray_deploy.RayServeOptions()) == tmp_path / "polyroute.yaml"
    assert isinstance(ray_deploy.app, Application)
    built = ray_deploy.build({"config": "polyroute.yaml", "replicas": "3"})
    assert isinstance(built, Application)
    with pytest.raises(AttributeError):
        _ = ray_deploy.nothing_here


def test_a_bad_config_is_refused_before_any_replica_starts(tmp_path: Path) -> None:
    bad = _config(tmp_path, server={"port": "not a port"})
    with pytest.raises(ConfigError, match=r"server\.port"):
        ray_deploy.build({"config": str(bad)})
    r = CliRunner().invoke(cli, ["ray", "serve", "--config", str(bad), "--replicas", "2"])
    assert r.exit_code == 2
    assert "server.port" in r.output
    r = CliRunner().invoke(
        cli, ["ray", "serve", "--config", str(_config(tmp_path)), "--min-replicas", "3",
              "--max-replicas", "1"],
    )  # fmt: skip
    assert r.exit_code == 2
    assert "min_replicas (3) is above max_replicas (1)" in r.output


def test_a_cluster_that_cannot_deploy_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        # What ray.init raises when no cluster answers at the address.
        raise ConnectionError("could not connect to the GCS at 10.9.9.9:6379")

    monkeypatch.setattr(ray_deploy, "deploy", unreachable)
    r = CliRunner().invoke(
        cli, ["ray", "serve", "--config", str(_config(tmp_path)), "--address", "10.9.9.9:6379"]
    )
    assert r.exit_code == 2
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "Ray Serve could not deploy on the Ray cluster at 10.9.9.9:6379" in r.output
    assert "ConnectionError" in r.output and "ray status" in r.output
    assert "Traceback" not in r.output
