"""The dashboard's browser tests share one headless Chromium per module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support import browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A launched Chromium; skipped without one, except in CI, where it must run."""
    why = browser.missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {why}")
        pytest.skip(why)
    with browser.chromium() as b:
        yield b
