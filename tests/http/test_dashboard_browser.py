"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a
real `constellation serve`: run a pipeline from the form, watch its nodes turn
completed live, open a failed execution and read its error. A screenshot goes to
.ci/out/dashboard.png (CI keeps it; docs/images/dashboard.png is one of them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.http.daemon import ROOT, WatchDaemon

httpx = pytest.importorskip("httpx")

CHROMIUM = "/usr/bin/chromium"
KEY = "dashboard-secret-key"
TWO_COMPLETED = "#dag g[data-status='completed'] ~ g[data-status='completed']"


def _browser() -> Any:
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI the browser test must run: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture
def browser_page() -> Any:
    sync_playwright = _browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def test_run_watch_and_inspect_in_the_dashboard(tmp_path: Path, browser_page: Any) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    daemon = WatchDaemon(tmp_path, keys={KEY: "execute"})
    try:
        page.goto(f"{daemon.url}/dashboard")
        # Auth on: the page asks for a key, keeps it in the session.
        page.wait_for_selector("#notice", state="visible")
        assert "API key" in page.inner_text("#notice")
        page.fill("#api-key", KEY)
        page.click("#save-key")
        page.wait_for_selector("#run-ref option[value='slow-upper']", state="attached")
        assert page.evaluate("sessionStorage.getItem('constellation.apiKey')") == KEY
        page.wait_for_selector("#pipelines tr[data-pipeline='failing']")

        # Run from the form; the DAG shows the nodes running, then completed, live.
        page.select_option("#run-ref", "slow-upper")
        page.fill("#run-inputs", '{"text": "hello", "seconds": 0.6}')
        page.click("#run-button")
        page.wait_for_selector("#dag g[data-status='running']")
        # (Selectors, not JavaScript: the page's CSP allows no eval.) Two completed nodes:
        page.wait_for_selector(TWO_COMPLETED)
        page.wait_for_selector("#events tbody tr >> text=execution.finished")
        row = page.wait_for_selector("#executions tr.selected")
        assert "slow-upper" in row.inner_text()

        # A failed execution: its error is shown when it is opened.
        failed = httpx.post(f"{daemon.url}/execute", json={"ref": "failing", "inputs": {
            "text": "bad"}}, headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()
        assert failed["status"] == "failed"
        page.click("#refresh")
        page.click(f"#executions tr[data-execution='{failed['execution_id']}']")
        error = page.wait_for_selector("#detail .error")
        assert "E300" in error.inner_text()
        assert "ValueError: boom: bad" in error.inner_text()
        page.wait_for_selector("#dag g[data-status='failed']")

        # Back to the completed run for the picture.
        page.click("#executions tr >> text=slow-upper")
        page.wait_for_selector(TWO_COMPLETED)
        out = ROOT / ".ci" / "out"
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "dashboard.png"), full_page=True)
        if os.environ.get("CONSTELLATION_UPDATE_DOCS_SCREENSHOT") == "1":
            shutil.copy(out / "dashboard.png", ROOT / "docs" / "images" / "dashboard.png")
        assert errors == []
    finally:
        daemon.stop()
