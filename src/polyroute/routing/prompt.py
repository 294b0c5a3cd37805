"""The text a router reads of a chat request: the same at training and at serving time.

Routers are trained on prompts as text; the gateway builds the text of a live request with
the same function, so that what a router sees when it serves is what it learned from.

Of a conversation, the router reads what the next answer depends on: the system prompt,
the last user turn, and the tool results that came after it. Earlier turns were answered
already, and an assistant's tool-call JSON says what the model did, not what it is asked;
both would drown the question in text the router was not trained on. A conversation that
comes down to one user message reads as that message alone, as single prompts do in
routing data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_SYSTEM = frozenset({"system", "developer"})
#: Results of a tool (or legacy function) call, sent back for the model to use.
_TOOL_RESULTS = frozenset({"tool", "function"})


def flatten_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """What a router reads of ``messages``: a lone user message as is, else ``role: content``
    lines of the messages :func:`routed_messages` keeps.

    The same convention as :class:`polyroute.routing.base.RouteRequest.prompt`.
    """
    kept = routed_messages(messages)
    if len(kept) == 1 and kept[0].get("role") == "user":
        return content_text(kept[0].get("content"))
    return "\n".join(f"{m.get('role', 'user')}: {content_text(m.get('content'))}" for m in kept)


def routed_messages(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages the next answer depends on, in their order: system (and developer)
    messages, the last user message, and tool results after it.

    With no user message there is no turn to narrow down to, and every message is kept.
    """
    last_user = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None
    )
    if last_user is None:
        return list(messages)
    return [
        m
        for i, m in enumerate(messages)
        if i == last_user
        or m.get("role") in _SYSTEM
        or (i > last_user and m.get("role") in _TOOL_RESULTS)
    ]


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return "" if content is None else str(content)
