"""Key secrets: ``pr_<id>_<random>``, shown once, stored only as a salted SHA-256.

The id (the visible prefix) finds the row; the hash proves the rest. The secrets carry 256
random bits, so one salted SHA-256 is enough: a slow password hash would only slow the hot
path, as nobody can guess a 256-bit secret however fast the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "pr_"


def new_key_id() -> str:
    """A fresh visible id, e.g. ``pr_3f9a1c2e``."""
    return PREFIX + secrets.token_hex(4)


def new_secret(key_id: str) -> str:
    """A new secret for ``key_id``; it starts with the id, so the id can be read from it."""
    return f"{key_id}_{secrets.token_urlsafe(32)}"


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(salt.encode() + secret.encode()).hexdigest()


def matches(salt: str, secret_hash: str, secret: str) -> bool:
    return hmac.compare_digest(hash_secret(salt, secret), secret_hash)


def key_id_of(secret: str) -> str | None:
    """The id a presented secret claims (None when it is not shaped like one of ours)."""
    if not secret.startswith(PREFIX):
        return None
    head, sep, _rest = secret[len(PREFIX) :].partition("_")
    if not sep or len(head) != 8:
        return None
    return PREFIX + head
