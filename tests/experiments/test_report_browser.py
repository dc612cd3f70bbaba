"""A sweep report and a run report in a headless Chromium with the network off: every chart is
drawn (bands and heat-maps included), the privacy audit's reconstructions load as images, the
console shows no error, no request leaves the file, and a click on a column header sorts the
table. Skipped when Chromium, its driver or Selenium is missing (scripts/_setup.sh installs them
where it can)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report import chart_specs, make_privacy, make_run, make_sweep

from fedsec.experiments.report import write_report

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--window-size=1300,4200"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    yield driver
    driver.quit()


def load(driver: Any, page: Path, charts: int) -> None:
    """Open ``page`` and wait (at most 30 s) until its ``charts`` charts are drawn."""
    driver.get_log("performance"), driver.get_log("browser")  # drop what earlier pages left
    driver.get(page.as_uri())
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length") < charts:
        assert time.monotonic() < deadline, "the charts were not drawn within 30 s"
        time.sleep(0.1)


def requested_urls(driver: Any) -> list[str]:
    import json

    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def test_sweep_report_draws_offline_without_errors_or_requests(browser: Any, tmp_path: Path) -> None:
    page = write_report(make_sweep(tmp_path / "sweep"))
    specs = chart_specs(page.read_text())
    load(browser, page, len(specs))

    assert browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == len(specs)
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    requested = requested_urls(browser)
    assert page.as_uri() in requested  # the log sees the page's own request
    leaving = [url for url in requested if url != page.as_uri() and not url.startswith("data:")]
    assert not leaving, leaving

    bands = sum(1 for s in specs.values() for t in s["data"] if t.get("fill") == "tonexty")
    heatmaps = sum(1 for s in specs.values() for t in s["data"] if t["type"] == "heatmap")
    assert browser.execute_script("return document.querySelectorAll('.js-fill').length") >= bands > 0
    assert browser.execute_script("return document.querySelectorAll('.heatmaplayer image').length") == heatmaps > 0

    screenshot = tmp_path / "page.png"
    browser.save_screenshot(str(screenshot))
    from matplotlib import image as mpimg

    assert mpimg.imread(screenshot).std() > 0.05  # not a blank page: text and charts were drawn

    # A click on a header of the results table sorts its rows: by the mean (ASR), then by text.
    column = "return [...document.querySelectorAll('table.sortable tbody tr')].map(r => r.children[{}].textContent)"
    header = "document.querySelectorAll('table.sortable th')[{}].click()"
    asr = [f"{a} / {d}" for a, d in zip(*(browser.execute_script(column.format(i)) for i in (0, 1)), strict=True)]
    browser.execute_script(header.format(4))  # ASR (%), ascending
    ascending = browser.execute_script(column.format(4))
    assert [float(v.split()[0]) for v in ascending] == [11.0, 11.0, 81.0, 81.0]
    browser.execute_script(header.format(4))  # descending
    assert browser.execute_script(column.format(4)) == ascending[::-1]
    browser.execute_script(header.format(1))  # defenses, as text
    assert browser.execute_script(column.format(1)) == ["fedavg", "fedavg", "flame", "flame"]
    assert sorted(asr) == asr  # the page opened in grid order


def test_run_report_shows_the_reconstructions_offline(browser: Any, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    grids = make_privacy(run)
    page = write_report(run)
    load(browser, page, len(chart_specs(page.read_text())))

    shown = browser.execute_script(
        "return [...document.querySelectorAll('figure img')].map(i => [i.complete, i.naturalWidth, i.naturalHeight,"
        " i.getBoundingClientRect().width])")
    sizes = [(int.from_bytes(g[16:20], "big"), int.from_bytes(g[20:24], "big")) for g in grids]  # PNG header
    assert [(w, h) for _, w, h, _ in shown] == sizes and all(w > 0 for w, _ in sizes)
    assert all(complete and width > 0 for complete, _, _, width in shown)  # loaded and laid out
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    requested = requested_urls(browser)
    assert page.as_uri() in requested
    leaving = [url for url in requested if url != page.as_uri() and not url.startswith("data:")]
    assert not leaving, leaving
