"""The HTML report in headless Chromium: loads without console errors, tables and plots render,
wide tables scroll inside their box instead of widening the page; screenshots go to artifacts/.

Needs Debian's ``chromium`` and ``chromium-driver`` plus the ``selenium`` package ([dev] extra);
skips with the reason when any is missing, and fails instead where ``EVALSUITE_REQUIRE_BROWSER=1`` (``.ci/run``
sets it: CI must not pass by skipping the one test that opens the report in a browser). Selenium is pointed at
/usr/bin/chromedriver explicitly so it never tries to download a driver.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalsuite.report import build_report

DATA = Path(__file__).parent / "data" / "results"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_SHOT_HEIGHT = 12000


def unavailable(reason: str) -> None:
    """Skip locally; fail where the browser is required (CI)."""
    if os.environ.get("EVALSUITE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"EVALSUITE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        unavailable("headless Chromium not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        unavailable("selenium not installed (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--window-size=1280,900"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: Any, html: Path, width: int) -> None:
    driver.set_window_size(width, 900)
    driver.get(html.resolve().as_uri())
    driver.execute_script("return document.readyState")


def _screenshot(driver: Any, name: str, width: int) -> Path:
    """Full-page screenshot by growing the window (captureBeyondViewport mis-paints sticky cells)."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(height + 150, MAX_SHOT_HEIGHT))
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def _check_page(driver: Any, n_columns: int) -> None:
    errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == [], errors
    js = driver.execute_script
    assert js("return document.querySelectorAll('table').length") >= 8
    # Every plot decoded to a real bitmap.
    images = js("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
    assert len(images) >= 3 and all(ok and w > 100 for ok, w, _ in images), images
    # The metric tables have one column per (file, adapter) plus the row header.
    heads = js("return document.querySelector('h3 + .scroll thead tr').children.length")
    assert heads == n_columns + 1
    # Wide tables scroll inside their own box; the page itself never scrolls sideways.
    assert js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    # Model outputs wrap inside their cells.
    assert js("return getComputedStyle(document.querySelector('td.out')).whiteSpace") == "pre-wrap"
    # The untrusted <script> in a model output is shown as text and never ran.
    assert js("return document.scripts.length") == 0
    assert "<script>alert('x')</script>" in js("return document.body.innerText")


@pytest.mark.parametrize(("files", "n_columns", "width"), [
    (["good.json"], 2, 1280),
    (["bad.json", "three.json", "good_rerun.json"], 6, 1280),
    (["bad.json", "three.json", "good_rerun.json"], 6, 800),
])
def test_report_renders_in_chromium(browser: Any, tmp_path: Path, files: list[str], n_columns: int,
                                    width: int) -> None:
    html = tmp_path / "report.html"
    model = build_report([DATA / f for f in files], html)
    assert len(model.columns) == n_columns
    _open(browser, html, width)
    _check_page(browser, n_columns)
    shot = _screenshot(browser, f"report-{n_columns}col-{width}px.png", width)
    assert shot.stat().st_size > 10_000
