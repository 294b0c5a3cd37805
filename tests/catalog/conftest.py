"""A small hand-written catalog, so that resolution and pricing tests do not move when the
bundled data is regenerated."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.catalog import Catalog, parse_catalog

SMALL: dict[str, Any] = {
    "models": [
        {
            "id": "gpt-4o",
            "family": "gpt-4o",
            "creator": "openai",
            "context_window": 128000,
            "capabilities": ["json_mode", "tools", "vision"],
            "endpoints": [
                {
                    "provider": "openai",
                    "upstream_id": "gpt-4o",
                    "aliases": ["gpt-4o-2024-08-06"],
                    "prices": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
                    "limits": {"context_window": 128000, "max_output_tokens": 16384},
                },
                {
                    "provider": "azure",
                    "upstream_id": "gpt-4o",
                    "aliases": ["gpt-4o-2024-08-06"],
                    "prices": {"input": 2.75, "output": 11.0},
                },
            ],
        },
        {
            "id": "llama-3.1-70b",
            "creator": "meta",
            "aliases": ["llama-70b"],
            "context_window": 131072,
            "endpoints": [
                {"provider": "groq", "upstream_id": "llama-3.1-70b-versatile",
                 "prices": {"input": 0.59, "output": 0.79}},
            ],
        },
        {
            "id": "llama-3.3-70b",
            "creator": "meta",
            "aliases": ["llama-70b", "llama-3.3-70b-instruct"],
            "context_window": 131072,
            "capabilities": ["tools"],
            "lacks": ["vision"],
            "endpoints": [
                {"provider": "together_ai",
                 "upstream_id": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                 "prices": {"input": 0.88, "output": 0.88}},
                {"provider": "groq", "upstream_id": "llama-3.3-70b-versatile",
                 "prices": {"input": 0.59, "output": 0.79},
                 "limits": {"context_window": 32768}},
            ],
        },
        {
            "id": "mystery-1",
            "endpoints": [{"provider": "together_ai", "upstream_id": "lab/mystery-1"}],
        },
    ]
}  # fmt: skip


@pytest.fixture
def hub() -> Catalog:
    return parse_catalog(SMALL, source="tests/catalog/conftest.py")
