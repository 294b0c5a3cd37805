"""Providers: the parts that talk to models (remote OpenAI-compatible servers, local llama.cpp).

Provider kinds are registered in :data:`PROVIDERS`; the built-ins go through the same
registry (and entry-point group ``polyroute.providers``) as third-party ones.
"""

from __future__ import annotations

from polyroute.providers.base import JSON, ModelHealth, Provider, Usage
from polyroute.registry import Registry

PROVIDERS: Registry[type[Provider]] = Registry("providers")

__all__ = ["JSON", "PROVIDERS", "ModelHealth", "Provider", "Usage"]
