"""The chart's tests: a real helm (scripts/get-helm.sh puts one in .tools/) and rendering."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "polyroute"

Obj = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> str:
    found = ROOT / ".tools" / "helm"
    path = str(found) if found.is_file() else shutil.which("helm")
    if path is None:
        message = "no helm: run scripts/get-helm.sh"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the chart must be checked there)")
        pytest.skip(message)
    return path


def render(helm: str, *values: Path, sets: tuple[str, ...] = ()) -> list[Obj]:
    """The objects ``helm template`` renders for these values files and ``--set``s."""
    args = [helm, "template", "rel", str(CHART), "--namespace", "ml"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]
