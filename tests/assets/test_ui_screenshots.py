"""The datasets' assets in a real browser (issue 14 point 8).

A small backfill of the test dataset (1-4 January; day 3's source is missing, so its partition
fails) is recorded in a Dagster instance; the protected ``hpc-workflows ui`` serves that
instance, and Debian's headless Chromium opens the asset's partitions page and a
materialization's metadata with its preview map. The checks read the page (partition counts,
the failed and missing dates, the decoded preview image), not just that a PNG was written.

``HPCW_TEST_ARTIFACTS=folder`` keeps the screenshots (docs/img/ holds copies of good ones).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dagster import DagsterInstance

from hpc_workflows.assets import regridded_key
from hpc_workflows.datasets import load_datasets
from tests.assets.test_datasets import _backfill
from tests.job_scripts.browser import CHROMIUM, FLAGS
from tests.ui.conftest import start_ui, stop_ui

pytestmark = pytest.mark.slow

ASSET_PATH = "/assets/tas_daily/regridded"
TIMEOUT_MS = 120_000  # a loaded 2-core machine: the code location can take a minute to load


@pytest.fixture
def ui_after_backfill(dataset_dir, dagster_home, tmp_path, monkeypatch):
    """The UI (on TCP loopback, token-protected) over an instance holding a 1-4 January backfill."""
    monkeypatch.setenv("HPCW_DATASETS", str(dataset_dir))
    (spec,), _ = load_datasets(dataset_dir)
    with DagsterInstance.get() as instance:
        result = _backfill(spec, instance, "2020-01-01", "2020-01-04")
        assert not result.success  # day 3 failed: its source never arrived
        assert sorted(instance.get_materialized_partitions(regridded_key(spec))) == [
            "2020-01-01", "2020-01-02", "2020-01-04"]
    # start_ui uses tmp_path/"dagster_home", the instance the backfill wrote to.
    assert dagster_home == tmp_path / "dagster_home"
    ui = start_ui(tmp_path, "--host", "127.0.0.1")
    try:
        yield ui
    finally:
        stop_ui(ui)


def _status_dot(page, day: str) -> str:
    """The colour of the status dot beside ``day`` in the partitions list (a CSS variable
    such as ``var(--color-accent-red)``)."""
    return page.locator(f'[title="{day}"]').first.evaluate(
        "el => el.parentElement.nextElementSibling.style.background")


def test_partitions_page_and_preview_in_browser(ui_after_backfill, tmp_path):
    from playwright.sync_api import sync_playwright

    ui = ui_after_backfill
    base = f"http://127.0.0.1:{ui.port}"
    parts_png, preview_png = tmp_path / "asset_partitions.png", tmp_path / "asset_preview.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            skip = page.get_by_role("button", name="Skip")
            page.add_locator_handler(skip, lambda loc: loc.click())
            # The token once; the cookie it comes back with carries the rest of the session.
            page.goto(f"{base}{ASSET_PATH}?view=partitions&token={ui.token}", timeout=TIMEOUT_MS)
            counts = page.get_by_text(re.compile(r"Missing \(\d+\)")).first
            counts.wait_for(state="visible", timeout=TIMEOUT_MS)
            page.screenshot(path=str(parts_png))
            text = page.inner_text("body")
            # Days 1, 2 and 4 materialized; 3 failed (its source never came); 5 and 6 never asked for.
            assert "Failed (1)" in text and "Materialized (3)" in text and "Missing (2)" in text, text
            assert "403 Forbidden" not in text
            dots = {day: _status_dot(page, day) for day in
                    ("2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05")}
            colours = {day: re.sub(r"var\(--color-accent-(\w+)\)", r"\1", dot) for day, dot in dots.items()}
            assert colours == {"2020-01-01": "green", "2020-01-02": "green", "2020-01-03": "red",
                               "2020-01-04": "green", "2020-01-05": "gray"}, dots

            # One materialized date: its latest materialization's metadata, and the preview map.
            page.get_by_text("2020-01-02", exact=True).first.click(timeout=TIMEOUT_MS)
            page.get_by_text("tas.valid_fraction").first.wait_for(state="visible", timeout=TIMEOUT_MS)
            page.get_by_text("Show Markdown").first.click(timeout=TIMEOUT_MS)
            image = page.locator('img[alt="preview"]').first
            image.wait_for(state="visible", timeout=TIMEOUT_MS)
            # Decoded by the browser as a real picture, not a broken-image icon.
            width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width >= 200 and height >= 150, (width, height)
            page.screenshot(path=str(preview_png))
        finally:
            browser.close()
    keep = os.environ.get("HPCW_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in (parts_png, preview_png):
            (Path(keep) / png.name).write_bytes(png.read_bytes())
