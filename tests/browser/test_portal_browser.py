"""The portal in a real headless browser: Debian's chromium driven by Playwright against a
uvicorn server started by the test, over a processed demo night (tests/webdata.py), on SQLite and
PostgreSQL. Screenshots go to the ``artifacts_dir`` fixture's folder.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` Python package; Playwright's own browser download is never used.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.publish.web import create_app
from webdata import OBS_SET, TRACEBACK_MARK, DemoNight, build_demo_night

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# JavaScript: is every <img> matching the selector loaded, with a non-zero natural size, and not
# a blank (single-colour) picture? Returns [[id, width, height, distinct-colour count], ...].
IMAGE_CHECK = """
(selector) => Array.from(document.querySelectorAll(selector)).map((img) => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  let colours = 0;
  if (img.complete && img.naturalWidth > 0) {
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < data.length && seen.size < 50; i += 4 * 7) {
      seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    colours = seen.size;
  }
  return [img.id, img.naturalWidth, img.naturalHeight, colours];
})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def demo(registry: Registry, settings: Settings) -> DemoNight:
    return build_demo_night(registry, settings.archive_root)


@pytest.fixture
def server(registry: Registry, settings: Settings, demo: DemoNight) -> Iterator[str]:
    """Base URL of a uvicorn server running the portal in a thread of this process."""
    import uvicorn

    port = _free_port()
    app = create_app(settings, registry=registry, sql_time_limit_s=2.0)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(browser, server: str):  # noqa: ANN001, ANN201
    context = browser.new_context(base_url=server, accept_downloads=True,
                                  viewport={"width": 1400, "height": 1000})  # fmt: skip
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def _shot(page, artifacts_dir: Path, name: str, registry: Registry) -> Path:  # noqa: ANN001
    path = artifacts_dir / f"portal_{name}_{registry.dialect}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path


def _job_ids(page) -> list[int]:  # noqa: ANN001
    return [int(x) for x in page.eval_on_selector_all(
        "#jobs-table tbody tr[data-job-id]", "rows => rows.map(r => r.dataset.jobId)")]  # fmt: skip


def test_job_list_filters(page, demo: DemoNight, artifacts_dir: Path, registry: Registry) -> None:  # noqa: ANN001
    page.goto("/jobs")
    assert sorted(_job_ids(page)) == sorted(
        [demo.register_job, demo.calibration_job, demo.nightly_job, demo.rereduce_job])  # fmt: skip
    images = page.evaluate(IMAGE_CHECK, "img.chart")
    assert len(images) == 2 and all(w > 0 and h > 0 and n > 2 for _, w, h, n in images), images
    # Choosing a QC flag submits the filter form (portal.js).
    with page.expect_navigation():
        page.select_option("#f-qc", "red")
    assert "qc=red" in page.url
    assert sorted(_job_ids(page)) == sorted([demo.nightly_job, demo.calibration_job])
    with page.expect_navigation():
        page.select_option("#f-task", "demo_nightly")
    assert _job_ids(page) == [demo.nightly_job]
    assert "1 job" in page.inner_text("#jobs-total")
    _shot(page, artifacts_dir, "jobs_filtered", registry)
    # Date range with no jobs.
    page.fill("#f-until", "2000-01-01")
    with page.expect_navigation():
        page.click("#f-apply")
    assert _job_ids(page) == []
    assert "0 jobs" in page.inner_text("#jobs-total")


def test_click_to_failed_subjob_shows_traceback(
    page,
    demo: DemoNight,
    artifacts_dir: Path,
    registry: Registry,  # noqa: ANN001
) -> None:
    page.goto("/jobs")
    with page.expect_navigation():
        page.click(f"#jobs-table a:text-is('nightly {OBS_SET}')")
    assert page.url.endswith(f"/jobs/{demo.nightly_job}")
    assert "failed: 1" in page.inner_text("#children-counts")
    failed_row = page.locator("#children-table tr[data-status='failed']")
    assert failed_row.count() == 1
    with page.expect_navigation():
        failed_row.locator("a").first.click()
    assert page.url.endswith(f"/jobs/{demo.failed_subjob}")
    assert page.inner_text("#job-status") == "failed"
    traceback = page.inner_text("#traceback-1")
    assert "Traceback (most recent call last)" in traceback and TRACEBACK_MARK in traceback
    _shot(page, artifacts_dir, "failed_subjob_traceback", registry)
    # Back up the hierarchy through the breadcrumb, then to the obs set's status chart.
    with page.expect_navigation():
        page.click(f".crumbs a:text-is('{demo.nightly_job}')")
    with page.expect_navigation():
        page.click("#obsset-status-link")
    (img,) = page.evaluate(IMAGE_CHECK, "#status-evolution")
    assert img[1] > 300 and img[3] > 3, img
    _shot(page, artifacts_dir, "obs_set_status", registry)


def test_nightly_report_draws_plots(
    page,
    demo: DemoNight,
    artifacts_dir: Path,
    registry: Registry,  # noqa: ANN001
) -> None:
    page.goto("/report")
    page.wait_for_load_state("load")
    images = page.evaluate(IMAGE_CHECK, "#report-plots img")
    names = {i[0] for i in images}
    assert names == {"plot-seeing", "plot-sky_background", "plot-transparency",
                     "plot-zero_point", "plot-airmass", "plot-pass_fraction"}  # fmt: skip
    for ident, width, height, colours in images:
        assert width > 200 and height > 100 and colours > 3, (ident, width, height, colours)
    assert page.inner_text("#pass-percent") == "50.0"
    assert page.locator("#exposures-table tr.fail").count() == 4
    _shot(page, artifacts_dir, "nightly_report", registry)
    # Tighten the seeing cut: fewer frames pass.
    page.fill("#c-seeing", "1.0")
    with page.expect_navigation():
        page.click("#r-apply")
    page.wait_for_load_state("load")
    assert page.inner_text("#pass-percent") == "37.5"
    with page.expect_download() as dl:
        page.click("#failing-csv")
    lines = Path(dl.value.path()).read_text().strip().splitlines()
    assert lines[0].startswith("night,obs_set,filename") and len(lines) == 1 + 5


def test_sql_query_rows_plot_and_csv(
    page,
    demo: DemoNight,
    artifacts_dir: Path,
    registry: Registry,  # noqa: ANN001
) -> None:
    page.goto("/sql")
    page.fill("#sql-query", "SELECT id, size FROM archive_file ORDER BY id")
    page.fill("#sql-limit", "20")
    page.fill("#sql-x", "id")
    page.fill("#sql-y", "size")
    with page.expect_navigation():
        page.click("#sql-run")
    n_files = len(demo.files)
    assert page.locator("#sql-result tbody tr").count() == min(20, n_files)
    (plot,) = page.evaluate(IMAGE_CHECK, "#sql-plot")
    assert plot[1] > 200 and plot[3] > 3, plot
    _shot(page, artifacts_dir, "sql_browser", registry)
    with page.expect_download() as dl:
        page.click("#sql-csv")
    lines = Path(dl.value.path()).read_text().strip().splitlines()
    assert lines[0] == "id,size" and len(lines) == 1 + min(20, n_files)
    # A write attempt is refused with a clear message.
    page.fill("#sql-query", "DELETE FROM archive_file")
    with page.expect_navigation():
        page.click("#sql-run")
    assert "read-only" in page.inner_text("#sql-error")
    page.goto("/sql?q=SELECT+count(*)+AS+n+FROM+archive_file")
    assert page.inner_text("#sql-result tbody td") == str(n_files)
