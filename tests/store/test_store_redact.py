"""Secrets are dropped from stored request bodies; everything else is kept as sent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyroute.store.redact import is_secret_key, redact


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apiKey",
        "API-KEY",
        "x-api-key",
        "openai_api_key",
        "authorization",
        "Authorization",
        "password",
        "db_password",
        "secret",
        "client_secret",
        "secret_key",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "cookie",
        "private_key",
        "credentials",
    ],
)
def test_credential_keys_are_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "max_completion_tokens",
        "prompt_tokens",
        "logit_bias",
        "tokenizer",
        "user",
        "messages",
        "content",
        "secret_santa_rules",
        "password_hint_shown",
        "tools",
        "keys",
    ],
)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_drops_secrets_at_any_depth_and_keeps_the_rest() -> None:
    body = {
        "model": "auto",
        "max_tokens": 16,
        "api_key": "sk-1",
        "messages": [{"role": "user", "content": "hi", "authorization": "Bearer x"}],
        "metadata": {"nested": [{"password": "p", "keep": 1}]},
        "extra_headers": {"Authorization": "Bearer y", "X-Trace": "t"},
    }
    assert redact(body) == {
        "model": "auto",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"nested": [{"keep": 1}]},
        "extra_headers": {"X-Trace": "t"},
    }
    assert body["api_key"] == "sk-1"  # a copy: the request's own body is untouched


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["api_key", "max_tokens", "token", "content", "Authorization", "n"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


@given(json_values)
def test_no_secret_key_survives_and_no_other_key_is_lost(value: Any) -> None:
    out = redact(value)
    assert not any(is_secret_key(k) for k in _keys(out))
    if isinstance(value, dict):
        assert {k for k in value if not is_secret_key(k)} == set(out)
