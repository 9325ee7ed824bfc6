"""The lineage page in headless chromium (Playwright, Debian's chromium as in
test_portal_browser.py) over the synthetic two-night graph, on SQLite and PostgreSQL: the graph
is drawn with every product a link, a product flagged bad is outlined red, and a click walks to
a calibration's own lineage and to what was made from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_portal_browser import _free_port, browser  # noqa: F401 (the module's fixture)

from lineage_support import build_graph
from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.pipelines.lineage.flags import Validity, set_validity
from surveydm.publish.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def site(registry: Registry, settings: Settings):  # noqa: ANN201
    import threading
    import time

    import uvicorn

    graph = build_graph(registry)
    with registry.session() as s:
        set_validity(s, graph.nights[0].flat, Validity.BAD, author="ana", reason="dust")
    port = _free_port()
    app = create_app(settings, registry=registry, sql_time_limit_s=2.0)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", graph
    srv.should_exit = True
    thread.join(timeout=10)


def test_lineage_graph_is_drawn_and_navigable(browser, site, artifacts_dir: Path, registry):  # noqa: ANN001, F811
    base, graph = site
    n0 = graph.nights[0]
    context = browser.new_context(base_url=base, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"/lineage/detection:{n0.detection}")
    types = page.eval_on_selector_all(
        "#lineage-graph a.node", "els => els.map(e => e.dataset.productType)"
    )
    assert sorted(set(types)) == ["master_bias", "master_flat", "raw", "reduced_sci", "refcat"]
    assert len(types) == 11
    box = page.locator(f'#lineage-graph a.node[data-product-id="{n0.flat}"] rect')
    assert box.get_attribute("stroke") == "#c00"  # flagged bad
    assert page.locator("#lineage-graph .edge").count() == 11
    page.screenshot(path=str(artifacts_dir / f"lineage_{registry.dialect}.png"), full_page=True)
    with page.expect_navigation():
        page.click(f'#lineage-graph a.node[data-product-id="{n0.flat}"]')
    assert page.url.endswith(f"/lineage/product:{n0.flat}")
    with page.expect_navigation():
        page.click("#lineage-dependents-link")
    ids = page.eval_on_selector_all(
        "#lineage-table tbody tr", "rows => rows.map(r => +r.dataset.productId)"
    )
    assert sorted(ids) == sorted([n0.flat, *n0.images])
    context.close()


def test_curator_logs_in_flags_and_undoes_from_the_lineage_page(browser, site, registry):  # noqa: ANN001, F811
    from sqlalchemy import select

    from surveydm.db.access import add_user, issue_token
    from surveydm.db.models.production import Product
    from surveydm.db.models.validity import ValidityFlag

    base, graph = site
    flat = graph.nights[1].flat
    with registry.session() as s:
        add_user(s, "ana", "curator")
        add_user(s, "rui", "reader")
        tokens = {"ana": issue_token(s, "ana"), "rui": issue_token(s, "rui")}
    context = browser.new_context(base_url=base, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"/lineage/product:{flat}")
    assert page.locator("#flag-form").count() == 0  # anonymous: no form
    for who in ("rui", "ana"):
        page.goto(f"/lineage/product:{flat}")
        with page.expect_navigation():
            page.click("#login-link")
        page.fill("#login-name", who)
        page.fill("#login-token", tokens[who])
        with page.expect_navigation():
            page.click("#login-submit")
        assert page.url.endswith(f"/lineage/product:{flat}")
        assert who in page.inner_text("#whoami")
        if who == "rui":  # a reader sees no form; log out to switch user
            assert page.locator("#flag-form").count() == 0
            with page.expect_navigation():
                page.click("#logout")
    page.goto(f"/lineage/product:{flat}")
    page.select_option("#flag-validity", "bad")
    page.fill("#flag-reason", "condensation on the dewar window")
    with page.expect_navigation():
        page.click("#flag-set")
    assert page.inner_text("#root-validity") == "bad"
    assert "condensation on the dewar window" in page.inner_text("#flag-history")
    box = page.locator(f'#lineage-graph a.node[data-product-id="{flat}"] rect')
    assert box.get_attribute("stroke") == "#c00"
    with page.expect_navigation():
        page.click("#flag-undo")
    assert page.inner_text("#root-validity") == "ok"
    with registry.session(write=False) as s:
        assert s.get(Product, flat).validity == "ok"
        rows = s.scalars(select(ValidityFlag).where(ValidityFlag.product_id == flat)).all()
        assert [(r.author, r.validity) for r in rows] == [("ana", "bad"), ("ana", "ok")]
        assert rows[1].undoes_id == rows[0].id
    # a cross-site form post carries the cookie? SameSite=Strict keeps it out; even a
    # same-site post without the CSRF token is refused
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams(
            {action: 'set', validity: 'bad', reason: 'forged'})})).status""",
        f"/lineage/product:{flat}/flag",
    )
    assert status == 403
    context.close()
