"""The dashboard's keys and spend panel in a real browser (headless Chromium via Playwright),
over a real gateway with auth on that has served the openai client under two virtual keys.

The admin key sees every key's budget and spend and every trace; a key with the
``dashboard`` permission sees its own traces only, and no totals. Each logs in as a browser
does (``/ui?key=...`` sets an HttpOnly cookie), in a browser context of its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.auth.support import ADMIN, admin_headers, auth_config, create_key
from tests.conftest import serving
from tests.support import browser
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi there"}]


def _settled(root: str, traces: int, key_ids: list[str]) -> None:
    """Wait (bounded) until the recorder stored every trace and every key's spend."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = httpx.get(f"{root}/ui/api/traces", headers=admin_headers()).json()["traces"]
        spend = httpx.get(f"{root}/ui/api/keys", headers=admin_headers()).json()["keys"]
        reserved = [k["spend"].get("reserved_usd") for k in spend if k["id"] in key_ids]
        if len(seen) == traces and reserved and all(r == 0 for r in reserved):
            return
        time.sleep(0.1)
    raise AssertionError("the gateway did not store the traffic in 20 s")


def _open(chromium: Any, url: str) -> tuple[Any, Any, list[str]]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems = browser.watch(page)
    page.goto(url)
    page.wait_for_selector("body[data-loaded='1']", timeout=15000)
    return context, page, problems


def test_keys_panel_for_the_admin_and_own_traces_for_a_dashboard_key(
    chromium: Any,
    echo_upstream: EchoUpstream,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shots = Path(os.environ.get("POLYROUTE_SCREENSHOTS") or tmp_path)
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    with serving(create_app(auth_config(echo_upstream.base_url, db_url))) as base_url:
        root = base_url.removesuffix("/v1")
        app = create_key(root, alias="app", team="research", budget_usd=1.0, period="monthly")
        viewer = create_key(root, alias="viewer", permissions=["dashboard"])
        for key, n in ((app, 3), (viewer, 2)):
            client = openai.OpenAI(base_url=base_url, api_key=key["secret"], max_retries=0)
            for _ in range(n):
                client.chat.completions.create(model="echo", messages=USER)
        _settled(root, 5, [app["id"], viewer["id"]])

        # The admin: every key with its budget and spend, every trace.
        context, page, problems = _open(chromium, f"{root}/ui?key={ADMIN}")
        assert page.url == f"{root}/ui"  # the key left the address bar for a cookie
        panel = page.locator("#keys-panel")
        assert panel.is_visible()
        rows = {
            r.locator("td").first.inner_text(): r.locator("td").all_inner_texts()
            for r in page.locator("#keys tbody tr").all()
        }
        assert set(rows) == {"app", "viewer"}
        key, team, budget, spent, left, requests, by_model = rows["app"]
        assert (team, requests) == ("research", "3")
        assert "/ monthly" in budget and budget.startswith("$1")
        # $0.000021 spent of $1: what is left shows as "$1" at two significant digits.
        assert spent.startswith("$0.0000") and left == "$1"
        assert by_model.startswith("echo $")
        assert rows["viewer"][2] == "none" and rows["viewer"][5] == "2"
        assert "Teams: research $" in page.inner_text("#keys")
        assert page.locator("#traces tbody tr.clickable").count() == 5
        assert page.inner_text("#cards .card:first-child .value") == "5"
        assert all(t.is_visible() for t in page.locator(".totals").all())
        panel.screenshot(path=str(shots / "dashboard-keys.png"))
        assert problems == []
        context.close()

        # A dashboard key: its own two traces, no keys panel and no totals.
        context, page, problems = _open(chromium, f"{root}/ui?key={viewer['secret']}")
        assert page.locator("#keys-panel").is_hidden()
        # The panels of everyone's totals are hidden, not left empty.
        assert page.locator("#cards").is_hidden() and page.locator(".totals").count() == 4
        assert all(not t.is_visible() for t in page.locator(".totals").all())
        own = page.locator("#traces tbody tr.clickable")
        assert own.count() == 2
        ids = {own.nth(i).get_attribute("data-id") for i in range(own.count())}
        admin_view = httpx.get(f"{root}/ui/api/traces", headers=admin_headers()).json()
        others = [t["id"] for t in admin_view["traces"] if t["id"] not in ids]
        assert len(others) == 3
        # Another key's trace is not this key's to open: the page's own API says 404.
        r = context.request.get(f"{root}/ui/api/traces/{others[0]}")
        assert r.status == 404
        own.first.click()
        page.wait_for_selector("dialog#trace[open]")
        assert "hi there" in page.inner_text("#trace-body")
        page.screenshot(path=str(shots / "dashboard-viewer.png"))
        # The totals it may not read were refused (403), and nothing else went wrong.
        assert all("403" in p for p in problems), problems
        context.close()
