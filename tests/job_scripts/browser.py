"""Screenshots of the Dagster UI in Debian's headless Chromium, driven by Playwright.

Playwright's Python package brings only its driver; the browser is the system's
`/usr/bin/chromium` (installed by ci/install-system-packages.sh), so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying to reach Google's hosts,
# which this sandbox refuses.
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]


def screenshot(url: str, path: Path, wait_for_text: list[str], timeout_s: float = 90.0,
               click: list[str] = ()) -> str:
    """Open ``url``, dismiss Dagster's first-visit dialog, click each text in ``click``, wait
    until every text in ``wait_for_text`` is visible, save a PNG to ``path``; return the
    page's text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            skip = page.get_by_role("button", name="Skip")
            # The dialog can open late on a loaded machine, over the element we click next:
            # Playwright then dismisses it before each action.
            page.add_locator_handler(skip, lambda loc: loc.click())
            page.goto(url, timeout=timeout_s * 1000)
            try:
                skip.click(timeout=5_000)  # the "Join the Dagster community" dialog
            except Exception:  # noqa: BLE001 - the dialog is not shown on every version
                pass
            for text in click:
                page.get_by_text(text).first.click(timeout=timeout_s * 1000)
            for text in wait_for_text:
                page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout_s * 1000)
            page.screenshot(path=str(path), full_page=True)
            return page.inner_text("body")
        finally:
            browser.close()
