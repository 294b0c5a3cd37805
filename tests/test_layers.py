"""The layers hold: serving code imports nothing of the offline pipeline."""

from __future__ import annotations

import subprocess
import sys

# What a running gateway must never load: training/eval/import code and the bench runner.
OFFLINE = ("polyroute.routing_eval", "polyroute.bench", "polyroute.cli")

_PROBE = """
import sys
from polyroute.config import default_config
from polyroute.gateway.app import create_app
from polyroute.gateway.routing import build_router_hub
app = create_app(default_config())
hub = build_router_hub(default_config())
print("\\n".join(sorted(m for m in sys.modules if m.startswith("polyroute"))))
"""


def test_the_gateway_imports_nothing_offline() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert "polyroute.gateway.app" in out  # the probe did import the gateway
    assert "polyroute.routing.registry" in out  # and built its routers
    offline = [m for m in out if m.startswith(OFFLINE)]
    assert offline == []


_RAY_PROBE = """
import sys
import polyroute.cli.main  # every command registered, ``ray serve`` included
from polyroute.config import default_config
from polyroute.gateway.app import create_app
app = create_app(default_config())
print("\\n".join(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))))
"""


def test_the_gateway_and_the_cli_do_not_import_ray() -> None:
    """Ray is an optional extra, imported by polyroute/deploy/ray.py alone."""
    out = subprocess.run(
        [sys.executable, "-c", _RAY_PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == []
