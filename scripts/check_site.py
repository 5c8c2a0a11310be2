"""Open the built documentation site in a headless Chromium: every page loads, navigation and search work.

`mkdocs build --strict` proves the links resolve on disk; this proves what a reader gets in a browser:
the theme's JavaScript runs without errors, clicking a navigation entry opens its page, and the
search box finds a guard option and opens the hit. Run by `.ci/run` where Chromium is installed:

    python scripts/check_site.py SITE_DIR [--chromium /usr/bin/chromium]

Needs `playwright` (the Python package only: it drives the system Chromium, nothing is downloaded).
Exits 1 with what failed.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from playwright.sync_api import sync_playwright


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the check prints its own findings."""


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check(site: Path, chromium: str) -> list[str]:
    """Return what failed (empty when the site works)."""
    failures: list[str] = []
    server, base = _serve(site)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            script_errors: list[str] = []
            page.on("pageerror", lambda error: script_errors.append(str(error)))

            page.goto(base)
            if page.title() != "memguard":
                failures.append(f"home page title is {page.title()!r}")
            links = page.locator("nav.md-nav--primary a.md-nav__link[href]")
            pages = sorted(
                {
                    urljoin(base, href.split("#")[0])
                    for href in (links.nth(i).get_attribute("href") or "" for i in range(links.count()))
                }
            )
            for url in pages:
                response = page.goto(url)
                if response is None or response.status != 200:
                    failures.append(f"navigation entry {url} answered {response and response.status}")
                elif not page.locator("article h1").count():
                    failures.append(f"{url} has no heading")
            print(f"site check: {len(pages)} pages in the navigation load")

            page.goto(base)
            page.locator("nav.md-nav--primary").get_by_role("link", name="Audit mode").first.click()
            page.wait_for_load_state()
            heading = page.locator("article h1").first.inner_text()
            if not page.url.endswith("/audit/") or "Audit mode" not in heading:
                failures.append(f"clicking 'Audit mode' opened {page.url} ({heading!r})")
            else:
                print("site check: clicking a navigation entry opens its page")

            page.goto(base)
            search_box = page.locator("input.md-search__input")
            search_box.click()
            search_box.fill("cooldown")
            try:
                page.wait_for_selector(".md-search-result__item", timeout=15_000)
            except Exception:  # noqa: BLE001 - playwright's timeout error; reported below
                failures.append("searching 'cooldown' showed no result within 15 s")
            else:
                hits = page.locator(".md-search-result__item")
                print(f"site check: search for 'cooldown' shows {hits.count()} results")
                hits.first.locator("a").first.click()
                page.wait_for_load_state()
                if page.url.rstrip("/") + "/" == base:
                    failures.append("clicking the first search result stayed on the home page")
            for error in sorted(set(script_errors)):
                failures.append(f"JavaScript error ({script_errors.count(error)}x): {error}")
            browser.close()
    finally:
        server.shutdown()
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the folder `mkdocs build` wrote")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    arguments = parser.parse_args()
    if not (arguments.site / "index.html").is_file():
        print(f"site check: {arguments.site} holds no built site (no index.html)", file=sys.stderr)
        return 1
    failures = check(arguments.site, arguments.chromium)
    for failure in failures:
        print(f"site check FAILED: {failure}", file=sys.stderr)
    if not failures:
        print("site check: the site works in Chromium")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
