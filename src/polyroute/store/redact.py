"""Removing secrets from a request body before it is stored.

Keys that name a credential (``api_key``, ``authorization``, ``password``, ``client_secret``,
``access_token``, ...) are dropped wherever they occur, at any depth. Keys that merely
contain a secret-looking word are kept: ``max_tokens``, ``prompt_tokens`` and
``secret_santa_rules`` are not credentials. Free text (a message's content) is stored as
sent: a secret pasted into a prompt can only be kept out by ``store.store_text: false``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# Whole key names (case-insensitive, "-" and "_" alike) that hold credentials.
_SECRET_KEY = re.compile(
    r"""^(?:[a-z0-9]+_)*(?:
        api_?key | secret | secret_?key | password | passwd | passphrase | authorization
        | credentials? | cookie | set_cookie | private_?key
        | (?:access|refresh|id|auth|api|bearer|session|csrf)_?token
    )$|^token$""",
    re.IGNORECASE | re.VERBOSE,
)


# Bodies repeat a handful of key names: remembering the verdict makes redaction cheap.
@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a key's name says its value is a credential."""
    return bool(_SECRET_KEY.match(key.replace("-", "_")))


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON data) without the entries whose key names a credential."""
    if isinstance(value, dict):
        return {
            k: redact(v) for k, v in value.items() if not (isinstance(k, str) and is_secret_key(k))
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
