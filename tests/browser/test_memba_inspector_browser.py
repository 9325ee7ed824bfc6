"""The aperture inspector in headless Chromium (Debian's, driven by Playwright) over memba
results, on SQLite and PostgreSQL: find an object by position, open it, pick a band, and see
the flux plot and the cut-outs with their apertures drawn. Screenshots go to artifacts_dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_portal_browser import IMAGE_CHECK, browser, page, server  # noqa: E402, F401

from memba_support import memba_fixture  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(registry, settings, tmp_path):  # noqa: ANN001, ANN201
    """Replaces the portal tests' demo night: memba results over the synthetic sky."""
    return memba_fixture(settings, registry, tmp_path)


def test_inspector_from_position_to_cutouts(page, demo, artifacts_dir, registry):  # noqa: ANN001, F811
    rid = int(demo.ref_id[5])
    page.goto("/inspector")
    page.fill("input[name=ra]", f"{demo.ra[5]:.7f}")
    page.fill("input[name=dec]", f"{demo.dec[5]:.7f}")
    page.fill("input[name=radius]", "2")
    with page.expect_navigation():
        page.click("#inspector-search button")
    with page.expect_navigation():
        page.click(f"#inspector-results a:text('{rid}')")
    assert page.locator("#inspector-bands tbody tr").count() == 2
    with page.expect_navigation():
        page.click("#inspector-bands a:text('NB455')")
    assert page.locator("#inspector-measurements tbody tr").count() == 2
    page.wait_for_load_state("networkidle")
    images = page.evaluate(IMAGE_CHECK, "#inspector-sed, img.cutout")
    assert len(images) == 3 and all(w > 0 and h > 0 and n > 2 for _, w, h, n in images), images
    path = artifacts_dir / f"inspector_{registry.dialect}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
