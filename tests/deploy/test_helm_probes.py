"""The chart's probes against a real gateway: what the kubelet would run, run here.

The readiness probe is an ``exec`` of a Python one-liner once auth is on (an ``httpGet``
probe cannot read the admin key from a Secret); these tests take the command as the chart
renders it, for the port the gateway listens on, and run it as the kubelet would, with the
pod's environment: it must pass on a ready gateway and fail on a wrong key or when no model
is ready. Liveness is an ``httpGet`` of ``/health/live``, which needs no key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.conftest import remote_config, serving
from tests.deploy.conftest import Obj, render
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app

ADMIN = "sk-admin-probe-test-0123456789"


def gateway_container(objs: list[Obj]) -> Obj:
    (deployment,) = [
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "rel-polyroute"
    ]
    container: Obj = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def run_probe(command: list[str], key: str) -> subprocess.CompletedProcess[str]:
    assert command[0] == "python"  # the image's interpreter; here, the test's
    env = {"PATH": os.environ.get("PATH", ""), "POLYROUTE_ADMIN_KEY": key}
    return subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readiness_probe_passes_on_a_ready_gateway_and_fails_on_a_wrong_key(
    helm: str, echo_upstream: EchoUpstream, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    with serving(create_app(remote_config(echo_upstream.base_url, db_url))) as base_url:
        port = urlsplit(base_url).port
        c = gateway_container(render(helm, sets=(f"gateway.port={port}",)))
        command = c["readinessProbe"]["exec"]["command"]
        assert run_probe(command, ADMIN).returncode == 0
        wrong = run_probe(command, "sk-not-the-admin-key")
        assert wrong.returncode != 0 and "401" in wrong.stderr
        # Liveness and startup need no key.
        live = c["livenessProbe"]["httpGet"]["path"]
        assert httpx.get(f"http://127.0.0.1:{port}{live}").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 401


def test_the_readiness_probe_fails_while_no_model_is_ready(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    down = f"http://127.0.0.1:{closed_port()}/v1"  # nothing listens there
    config = remote_config(down, f"sqlite:///{tmp_path / 'p.db'}")
    with serving(create_app(config)) as base_url:
        port = urlsplit(base_url).port
        c = gateway_container(render(helm, sets=(f"gateway.port={port}",)))
        result = run_probe(c["readinessProbe"]["exec"]["command"], ADMIN)
        assert result.returncode != 0 and "503" in result.stderr


def test_with_auth_off_readiness_is_a_plain_get_of_health(
    helm: str, echo_upstream: EchoUpstream, db_url: str
) -> None:
    config = remote_config(echo_upstream.base_url, db_url).model_copy(update={"auth": "none"})
    with serving(create_app(config)) as base_url:
        port = urlsplit(base_url).port
        c = gateway_container(render(helm, sets=("auth.enabled=false",)))
        path = c["readinessProbe"]["httpGet"]["path"]
        assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200
