"""Providers: the parts that talk to models (remote servers in their own APIs, local llama.cpp).

Three things, kept apart:

- the **interface**: a wire protocol, one :class:`Provider` subclass each, registered in
  :data:`PROVIDERS` under the name a config writes as ``api:`` (``openai_compat``,
  ``azure``, ``anthropic`` + ``anthropic_wire``, ``gemini`` + ``gemini_wire``,
  ``llama_local``); each declares its own config fields as options models;
- the **provider**: who serves it, a ``providers:`` entry (base URL, key, headers,
  timeouts), one instance of the interface's class and one connection pool;
- the **profile** (:mod:`polyroute.providers.profiles`): a model family's quirks (accepted
  parameters, whether it thinks, where it reports cache reads), whoever serves it.

The built-ins go through the same registry (and entry-point group ``polyroute.providers``)
as third-party ones.
"""

from __future__ import annotations

from polyroute.providers.base import JSON, ModelHealth, Provider, Usage
from polyroute.registry import Registry

PROVIDERS: Registry[type[Provider]] = Registry("providers")

__all__ = ["JSON", "PROVIDERS", "ModelHealth", "Provider", "Usage"]
