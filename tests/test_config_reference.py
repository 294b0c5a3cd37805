"""docs/config.md is generated from the config schema, complete, and current."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "config_reference", REPO / "scripts" / "config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_config_md_is_current() -> None:
    text = _generator().render()
    assert (REPO / "docs" / "config.md").read_text() == text, (
        "docs/config.md is out of date: run python scripts/config_reference.py"
    )


def test_every_field_is_documented_and_nothing_depends_on_the_machine() -> None:
    from polyroute.config import Config, ModelConfig, ProviderConfig, ServerConfig

    text = _generator().render()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    # The last cell (what the field means) of every row says something.
    undocumented = [r.split("|")[1].strip() for r in rows if r.endswith("|  |")]
    assert rows and undocumented == []
    for model in (Config, ServerConfig, ProviderConfig, ModelConfig):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, (model.__name__, name)
    # Each built-in provider API and router kind has its section, with its options.
    for heading in ("### `api: azure`", "### `api: llama_cpp`", "### `kind: knn`"):
        assert heading in text
    for option in ("api_version", "n_ctx", "queue_size", "lambda", "exploration", "weights"):
        assert f"| `{option}` |" in text, option
    assert str(Path.home()) not in text and not re.search(r"/(root|home)/", text)


def test_the_error_message_points_at_it(tmp_path: Path) -> None:
    import pytest

    from polyroute.config import load_config
    from polyroute.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("server: {hots: 0.0.0.0}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "server.hots" in e.value.message and "docs/config.md" in e.value.message
    assert (REPO / "docs" / "config.md").is_file()  # and the file it names exists
