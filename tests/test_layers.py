"""The layers hold: serving code imports nothing of the offline pipeline."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


def _imports_ray(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(n == "ray" or n.startswith("ray.") for n in names):
            return True
    return False


def test_only_deploy_ray_imports_ray() -> None:
    """Every use of Ray goes through polyroute/deploy/ray.py (the CLI calls its deploy() and
    delete()), however lazily another module would import it."""
    src = Path(__file__).resolve().parents[1] / "src" / "polyroute"
    importers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if _imports_ray(p))
    assert importers == ["deploy/ray.py"]
