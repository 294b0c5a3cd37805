"""An upstream that echoes the key it was sent: the key reaches neither the client nor the store."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.auth.support import ADMIN, admin_headers, auth_config

LEAKED = "sk-live-abcdefghijklmnopqrstuvwx"


def echoing_upstream() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        message = f"Incorrect API key provided: {LEAKED}. You can find your key at ..."
        return httpx.Response(401, json={"error": {"message": message, "type": "auth"}})

    return httpx.MockTransport(handle)


async def test_an_echoed_key_is_redacted_for_the_client_and_the_store(
    asgi_client: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    client = await asgi_client(auth_config("http://upstream.test/v1", db_url), echoing_upstream())
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        headers=admin_headers(),
    )
    # That provider's key is at fault, not the client's: a provider failure (issue 11).
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_auth_failed"
    assert LEAKED not in r.text
    await client.gateway.recorder.flush()
    rows = client.gateway.store.recent_requests(10)
    assert len(rows) == 1 and rows[0]["error"]
    assert LEAKED not in str(rows[0])
    # The admin key's requests are accounted too: under "admin".
    await client.gateway.admission.flush()
    assert client.gateway.keys.spend("admin")["by_model"]["echo"]["requests"] == 1
