"""The text a router reads of a chat request: the same at training and at serving time.

Routers are trained on prompts as text; the gateway builds the text of a live request with
the same function, so that what a router sees when it serves is what it learned from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def flatten_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """Chat messages as one text: a lone user message as is, else ``role: content`` lines.

    The same convention as :class:`polyroute.routing.base.RouteRequest.prompt`.
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return _content_text(messages[0].get("content"))
    return "\n".join(
        f"{m.get('role', 'user')}: {_content_text(m.get('content'))}" for m in messages
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return "" if content is None else str(content)
