"""The plugin contract: one module's names, pinned; a plugin package served for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polyroute.plugins

REPO = Path(__file__).resolve().parent.parent

PINNED = [
    "JSON", "PROVIDERS", "ROUTERS", "Candidate", "ConfigError", "Decision", "InvalidRequest",
    "ModelHealth", "ModelUnavailable", "NoEligibleModel", "NoOptions", "NotFound", "Options",
    "PolyrouteError", "Provider", "RateLimited", "Registry", "RouteRequest", "Router", "UpstreamError",
    "UpstreamIncomplete", "UpstreamTimeout", "UpstreamUnreachable", "Usage", "check_options",
]  # fmt: skip


def test_the_contract_is_pinned_and_sorted() -> None:
    assert polyroute.plugins.__all__ == PINNED
    assert sorted(PINNED, key=lambda n: (not n.isupper(), n)) == PINNED  # constants first
    for name in PINNED:
        assert getattr(polyroute.plugins, name) is not None


_SERVE = """
import json, openai
from tests.conftest import serving
from polyroute.config import Config
from polyroute.gateway import create_app
cfg = Config.model_validate({
    "store": {"database_url": "sqlite:///" + __import__("sys").argv[1]},
    "providers": {"loud": {"api": "shout", "suffix": "!"}},
    "models": [{"name": "loud-1", "provider": "loud"}, {"name": "loud-2", "provider": "loud"}],
    "routers": {"short": {"kind": "shortest", "threshold": 30}},
})
with serving(create_app(cfg)) as url:
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    short = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi there"}])
    long = client.chat.completions.create(
        model="short", messages=[{"role": "user", "content": "a much longer question " * 4}])
    chunks = list(client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "stream me"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    print(json.dumps({"short": [short.model, short.choices[0].message.content],
                      "long": long.model, "stream": text}))
"""


def test_a_plugin_package_is_served_through_its_entry_points(tmp_path: Path) -> None:
    """docs/plugins.md's module, installed as a package with entry points, serves `auto`."""
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "plugins.md").read_text(), re.S)[0]
    assert len(code.splitlines()) < 80  # the docs promise a complete provider in under 80
    site = tmp_path / "site"
    site.mkdir()
    (site / "shout_plugin.py").write_text(code)
    info = site / "shout_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[polyroute.providers]\nshout = shout_plugin:ShoutProvider\n\n"
        "[polyroute.routers]\nshortest = shout_plugin:ShortestPrompt\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO), str(REPO / "src")])}
    out = subprocess.run(
        [sys.executable, "-c", _SERVE, str(tmp_path / "p.db")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # The plugin router chose, the provider answered, each with its declared options.
    assert got["short"] == ["loud-1", "HI THERE!"]
    assert got["long"] == "loud-2"
    assert got["stream"].split() == ["STREAM", "ME!"]
