"""The /ui page in a real browser (headless Chromium via Playwright) over a real gateway
that has served real traffic from the openai client.

Screenshots go to ``$POLYROUTE_SCREENSHOTS`` when set (the README's come from
``scripts/dashboard_screenshots.py``), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from tests.conftest import serving
from tests.support import browser
from tests.support.dashboard_traffic import dashboard_config, send_traffic
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e


def wait_for(fetch: Any, check: Any, timeout_s: float = 10.0) -> Any:
    """Poll ``fetch()`` until ``check(value)``; the recorder writes in the background."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if check(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_dashboard_shows_the_traffic_and_opens_a_trace(
    chromium: Any, echo_upstream: EchoUpstream, db_url: str, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("POLYROUTE_SCREENSHOTS") or tmp_path)
    cfg = dashboard_config(echo_upstream.base_url, db_url)
    with serving(create_app(cfg)) as base_url:
        sent = send_traffic(base_url, waves=2)
        root = base_url.removesuffix("/v1")
        with httpx.Client(base_url=root) as http:
            summary = wait_for(
                lambda: http.get("/ui/api/summary").json(),
                lambda s: (
                    s["requests"] == sent["requests"] and s["feedback"]["count"] == sent["feedback"]
                ),
            )
            assert summary["requests"] == sent["requests"] == 23
            assert summary["errors"] == sent["errors"] == 1
            learned = wait_for(
                lambda: http.get("/ui/api/routers").json()["routers"],
                lambda rs: {r["router"] for r in rs} >= {"ucb", "thompson"},
            )
            assert {r["router"] for r in learned} >= {"ucb", "thompson"}

        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        problems = browser.watch(page)
        page.goto(f"{root}/ui?window=300")
        page.wait_for_selector("body[data-loaded='1']", timeout=15000)

        # Totals: the first card counts every request sent.
        assert page.inner_text("#cards .card:first-child .value") == str(sent["requests"])
        # Charts drew: bars of requests and cost, lines of latency, the model mix.
        assert page.locator("#chart-requests svg .bars rect").count() >= 1
        assert page.locator("#chart-cost svg .bars rect").count() >= 1
        assert page.locator("#chart-latency svg path.series").count() >= 2
        mix = page.locator("#mix .share-label").all_inner_texts()
        assert set(mix) == {"ucb", "thompson", "wrr", "(direct)"}
        assert page.locator("#mix .seg").count() >= 4
        assert page.locator("#chart-mix svg .bars rect").count() >= 1
        # Feedback quality per model, and what the learning routers saved.
        quality = page.locator("#quality .share-label").all_inner_texts()
        assert set(quality) <= {"echo", "cheap", "renamed"} and quality
        assert "ucb" in page.inner_text("#learning")
        # The benchmark leaderboard: its table and one point per model.
        board = page.inner_text("#leaderboard")
        assert "smollm2-135m" in board and "qwen2.5-coder-0.5b" in board and "oracle" in board
        assert page.locator("#leaderboard svg circle.point").count() == 2
        # The trace explorer lists them all (a page holds 25).
        rows = page.locator("#traces tbody tr.clickable")
        assert rows.count() == sent["requests"]
        page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

        # Filter: only requests answered by "renamed".
        page.select_option("#filters [name=model]", "renamed")
        # Locators, not wait_for_function: the page's CSP (default-src 'self') forbids the
        # eval that a string predicate needs, and the test must run under the real headers.
        expect(rows).to_have_count(sent["models"]["renamed"])
        models = page.locator("#traces tbody tr.clickable td:nth-child(4)").all_inner_texts()
        assert models and all(m.strip() == "renamed" for m in models)

        # Open a routed trace: its decision, attempts and the answer text.
        page.select_option("#filters [name=model]", "")
        page.select_option("#filters [name=router]", "ucb")
        routers = page.locator("#traces tbody tr.clickable td:nth-child(2)")
        wait_for(routers.all_inner_texts, lambda seen: seen and set(seen) == {"ucb"})
        page.locator("#traces tbody tr.clickable").first.click()
        page.wait_for_selector("dialog#trace[open]")
        body = page.inner_text("#trace-body")
        assert "Decision" in body and "ucb" in body
        assert page.locator("#trace-body .reason").count() == 1
        assert page.locator("#trace-body table").count() >= 2  # candidates and attempts
        assert any(p in body for p in ("capital of France", "haiku", "TCP", "Italian", "sorting"))
        page.screenshot(path=str(shots / "dashboard-trace.png"))
        page.click("#trace-close")
        assert page.locator("dialog#trace[open]").count() == 0
        assert problems == []
