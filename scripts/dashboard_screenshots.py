"""Screenshots of the dashboard for the README, from real traffic on 127.0.0.1.

Starts the echo upstream and a gateway (SQLite in a temporary directory), sends waves of
requests through three routers and directly, with feedback on the routed answers, then
opens /ui in headless Chromium and saves the page and one open trace::

    python scripts/dashboard_screenshots.py                 # → docs/img/dashboard*.png
    python scripts/dashboard_screenshots.py --waves 4 --pause 1 --out /tmp/shots
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import serving  # noqa: E402
from tests.support import browser  # noqa: E402
from tests.support.dashboard_traffic import dashboard_config, send_traffic  # noqa: E402
from tests.support.echo_upstream import running_echo_upstream  # noqa: E402

from polyroute.gateway import create_app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--waves", type=int, default=24, help="rounds of 12 requests")
    parser.add_argument("--pause", type=float, default=5.0, help="seconds between rounds")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    why = browser.missing()
    if why:
        sys.exit(why)
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_echo_upstream() as upstream,
        serving(create_app(dashboard_config(upstream.base_url, f"sqlite:///{tmp}/p.db"))) as url,
    ):
        sent = send_traffic(url, waves=args.waves, pause_s=args.pause)
        print(f"sent {sent['requests']} requests, {sent['feedback']} feedback", flush=True)
        time.sleep(1.0)  # the recorder's last batch, and the routers' saved state
        root = url.removesuffix("/v1")
        with browser.chromium() as chromium:
            page = chromium.new_page(viewport={"width": args.width, "height": 900})
            problems = browser.watch(page)
            page.goto(f"{root}/ui?window=300")
            page.wait_for_selector("body[data-loaded='1']")
            page.screenshot(path=str(args.out / "dashboard.png"), full_page=True)
            page.select_option("#filters [name=router]", "ucb")
            page.wait_for_timeout(500)
            page.locator("#traces tbody tr.clickable").first.click()
            page.wait_for_selector("dialog#trace[open]")
            page.screenshot(path=str(args.out / "dashboard-trace.png"))
            if problems:
                sys.exit("page problems: " + "; ".join(problems))
    print(f"wrote {args.out / 'dashboard.png'} and {args.out / 'dashboard-trace.png'}")


if __name__ == "__main__":
    main()
