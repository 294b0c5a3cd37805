"""Model profiles: a model family's quirks, whoever serves it and whatever API reaches it.

polyroute keeps three things apart (pydantic-ai's terms):

- the **interface** (``api:``): the wire protocol, one :class:`~polyroute.providers.base.Provider`
  subclass each (``openai``, ``azure``, ``anthropic``, ``gemini``, ``llama_cpp``);
- the **provider** (a ``providers:`` entry): who serves it, at which base URL, with which key,
  headers and timeouts;
- the **profile** (this table): what a family accepts and how it reports, e.g. OpenAI's
  reasoning models refuse ``max_tokens`` and ``temperature`` on any server that hosts them.

A profile is found by the model's upstream name (or its ``catalog_id``), once per model when
its provider is built; the request path reads a field of it, never this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What one family accepts and how it reports; the defaults pass everything on."""

    family: str
    #: Request fields the family refuses (an upstream 400): removed before sending.
    unsupported: frozenset[str] = frozenset()
    #: It takes its output cap only as ``max_completion_tokens`` (``max_tokens`` is renamed).
    max_completion_tokens_only: bool = False
    #: Whether it can think. False: ``reasoning_effort`` is dropped rather than turned into a
    #: thinking config it would refuse (a router may send a reasoning request to a model that
    #: cannot); None (unknown): passed on, and the upstream decides.
    thinks: bool | None = None
    #: The usage field an OpenAI-compatible answer reports prompt-cache reads in, when it is
    #: not OpenAI's ``prompt_tokens_details.cached_tokens``.
    cache_read_field: str | None = None

    @property
    def adapts(self) -> bool:
        """Whether :meth:`adapt` can change a request (most profiles: no, and it is skipped)."""
        return bool(self.unsupported) or self.max_completion_tokens_only or self.thinks is False

    def adapt(self, body: JSON) -> JSON:
        """``body`` as the family accepts it (a copy when anything changes)."""
        drop = self.unsupported | ({"reasoning_effort"} if self.thinks is False else set())
        if not (drop & body.keys() or (self.max_completion_tokens_only and "max_tokens" in body)):
            return body
        out = {k: v for k, v in body.items() if k not in drop}
        if self.max_completion_tokens_only and "max_tokens" in out:
            cap = out.pop("max_tokens")
            out.setdefault("max_completion_tokens", cap)
        return out


#: OpenAI's reasoning models: no sampling parameters, no ``max_tokens`` (o1 / o3 / o4 / gpt-5).
_OPENAI_REASONING = ModelProfile(
    "openai-reasoning",
    unsupported=frozenset(
        {
            "temperature",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
            "logprobs",
            "top_logprobs",
            "logit_bias",
        }
    ),
    max_completion_tokens_only=True,
    thinks=True,
)

#: (pattern on the name without its provider prefix, profile), first match wins.
PROFILES: tuple[tuple[re.Pattern[str], ModelProfile], ...] = (
    (re.compile(r"^(o1|o3|o4)(-|$)"), _OPENAI_REASONING),
    (re.compile(r"^gpt-5(?!.*-chat)"), _OPENAI_REASONING),
    (re.compile(r"^claude-(3-7|sonnet-4|opus-4|haiku-4)"), ModelProfile("claude", thinks=True)),
    (
        re.compile(r"^claude-(3-5|3-opus|3-sonnet|3-haiku|2|instant)"),
        ModelProfile("claude-no-thinking", thinks=False),
    ),
    (re.compile(r"^gemini-(2\.5|3)"), ModelProfile("gemini", thinks=True)),
    (re.compile(r"^(gemini-(1\.|2\.0)|gemma-)"), ModelProfile("gemini-no-thinking", thinks=False)),
    (
        re.compile(r"^deepseek-(reasoner|r1)"),
        ModelProfile(
            "deepseek-reasoner",
            unsupported=frozenset({"logprobs", "top_logprobs"}),
            thinks=True,
            cache_read_field="prompt_cache_hit_tokens",
        ),
    ),
    (
        re.compile(r"^deepseek-"),
        ModelProfile("deepseek", cache_read_field="prompt_cache_hit_tokens"),
    ),
)

DEFAULT = ModelProfile("default")

#: Every alternative cache-read field some profile names (read when OpenAI's is absent).
CACHE_READ_FIELDS = tuple(
    dict.fromkeys(p.cache_read_field for _, p in PROFILES if p.cache_read_field)
)


@lru_cache(maxsize=1024)
def profile_for(name: str) -> ModelProfile:
    """The profile of the model called ``name`` (``openai/o3``, ``gpt-5-mini``, ...)."""
    bare = name.rsplit("/", 1)[-1].lower()
    return next((profile for pattern, profile in PROFILES if pattern.search(bare)), DEFAULT)


def profile_of(*names: str | None) -> ModelProfile:
    """The profile of the first of ``names`` that has one (an upstream name, then a
    ``catalog_id``: an Azure deployment may be called anything)."""
    for name in names:
        if name:
            found = profile_for(name)
            if found is not DEFAULT:
                return found
    return DEFAULT
