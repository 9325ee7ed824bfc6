"""Lineage, validity flags, staleness, remake plans and releases on a synthetic two-night graph
(tests/lineage_support.py), on SQLite and PostgreSQL. The pixels-to-reprocessing case is
tests/test_lineage_night.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from prov.model import ProvDocument
from sqlalchemy import func, select
from typer.testing import CliRunner

from lineage_support import build_graph
from surveydm.db.models.calibration import CalibrationFrame
from surveydm.db.models.jobs import Job
from surveydm.db.models.production import Product, Production
from surveydm.db.models.raw import ArchiveFile
from surveydm.db.models.release import Erratum
from surveydm.pipelines.calibrations import find_calibration, night_window
from surveydm.pipelines.lineage.flags import FlagError, Validity, history, set_validity, undo_last
from surveydm.pipelines.lineage.graph import lineage
from surveydm.pipelines.lineage.prov import prov_json
from surveydm.pipelines.lineage.releases import ReleaseError, create_release, get_release
from surveydm.pipelines.lineage.remake import MakeError, make, plan_reprocess
from surveydm.pipelines.lineage.resolve import UnknownTargetError, resolve
from surveydm.pipelines.lineage.stale import stale_products
from surveydm.pipelines.productions import (
    ProductionFrozenError,
    add_product,
    get_or_create_production,
)


@pytest.fixture
def graph(registry):
    return build_graph(registry)


def _stale(registry, **kw):
    with registry.session(write=False) as s:
        return {i.id: i for i in stale_products(s, **kw)}


def test_lineage_both_ways_from_a_detection_to_raw_files_calibrations_and_refcat(registry, graph):
    n0 = graph.nights[0]
    with registry.session() as s:
        g = lineage(s, resolve(s, f"detection:{n0.detection}"))
        same = {
            resolve(s, f"image:{n0.image_rows[1]}").product_id,
            resolve(s, f"product:{n0.images[1]}").product_id,
            resolve(s, str(s.get(Product, n0.images[1]).uuid)).product_id,
        }
        raw_path = s.get(ArchiveFile, s.get(Product, n0.raw_science).file_id).path
        assert resolve(s, raw_path).product_id == n0.raw_science
        assert resolve(s, f"mosaic:{n0.mosaic_id}").product_id == n0.raw_science
        with pytest.raises(UnknownTargetError, match="names nothing"):
            resolve(s, "red/none.fits")
        with pytest.raises(UnknownTargetError, match="no detection"):
            resolve(s, "detection:999999")
    assert same == {n0.images[1]} and g.root == n0.images[1]
    assert g.detection is not None and g.detection.id == n0.detection
    raws = {n.id for n in g.of_type("raw")}
    assert raws == {n0.raw_science, *n0.raw_bias, *n0.raw_flat}
    assert [n.id for n in g.of_type("master_bias")] == [n0.bias]
    assert [n.id for n in g.of_type("master_flat")] == [n0.flat]
    assert [n.id for n in g.of_type("refcat")] == [graph.refcat]
    assert sorted(g.children(g.root)) == sorted(
        [("raw", n0.raw_science), ("bias", n0.bias), ("flat", n0.flat), ("refcat", graph.refcat)]
    )
    flat = g.nodes[n0.flat]
    assert (flat.calibration.valid_from, flat.calibration.valid_until) == night_window("2026-11-20")
    assert flat.job.worker == "pilot-1" and flat.job.task == "master_flat"
    assert flat.production.id == graph.production_id and flat.production.config == {
        "refcat": "pixelsim"
    }
    # JSON and W3C PROV-JSON: the same graph, readable back by the prov package
    doc = json.loads(json.dumps(g.to_json()))
    assert len(doc["nodes"]) == len(g.nodes) == 11 and len(doc["edges"]) == len(g.edges)
    pj = prov_json(g)
    back = ProvDocument.deserialize(content=json.dumps(pj), format="json")
    entities = {str(r.identifier) for r in back.get_records() if r.get_type().localpart == "Entity"}
    assert f"sdm:detection/{n0.detection}" in entities
    assert f"sdm:product/{flat.uuid}" in entities
    roles = {str(v) for r in pj["used"].values() for k, v in r.items() if k == "prov:role"}
    assert roles == {"raw", "bias", "flat", "refcat"}
    # dependents: a master bias feeds its night's flat and images, nothing of the other night
    n1 = graph.nights[1]
    with registry.session(write=False) as s:
        deps = lineage(s, resolve(s, f"product:{n0.bias}"), "dependents")
    assert set(deps.nodes) == {n0.bias, n0.flat, *n0.images}
    assert not set(deps.nodes) & {n1.bias, n1.flat, *n1.images}


def test_validity_flag_history_undo_and_calibration_choice(registry, graph):
    n0, n1 = graph.nights
    when = night_window("2026-11-20")[0] + timedelta(hours=9)
    with registry.session() as s:
        with pytest.raises(FlagError, match="say why"):
            set_validity(s, n0.flat, Validity.BAD, author="ana", reason=" ")
        set_validity(s, n0.flat, Validity.BAD, author="ana", reason="dust donut")
        assert s.get(Product, n0.flat).valid is False
        # the next best valid flat is chosen for an exposure of that night
        chosen = find_calibration(s, "master_flat", "mosaicam-mini", when, filter_tray="r")
        assert chosen.product_id == n1.flat
        with pytest.raises(FlagError, match="already bad"):
            set_validity(s, n0.flat, Validity.BAD, author="ana", reason="again")
        undo = undo_last(s, n0.flat, author="bob")
        assert (undo.previous, undo.validity) == ("bad", "ok")
        with pytest.raises(FlagError, match="no flag change to undo"):
            undo_last(s, n0.flat, author="bob")
        set_validity(s, n0.flat, Validity.QUALIFIED, author="cy", reason="checked")
        rows = history(s, n0.flat)
        p = s.get(Product, n0.flat)
        assert (p.validity, p.valid) == ("qualified", True)
    assert [(r.previous, r.validity, r.author, r.undoes_id) for r in rows] == [
        ("ok", "bad", "ana", None),
        ("bad", "ok", "bob", rows[0].id),
        ("ok", "qualified", "cy", None),
    ]
    assert rows[0].reason == "dust donut"


def test_stale_causes_bad_input_better_calibration_code_and_configuration(registry, graph):
    n0, n1 = graph.nights
    assert _stale(registry) == {}
    with registry.session() as s:
        set_validity(s, n0.flat, Validity.BAD, author="ana", reason="dust")
    stale = _stale(registry)
    assert set(stale) == set(n0.images)  # exactly the images that used it
    assert set(_stale(registry, obs_set="20261120_001")) == set(n0.images)
    assert _stale(registry, obs_set="20261121_001") == {}
    assert {(c.cause, c.kind, c.source_id) for i in stale.values() for c in i.causes} == {
        ("data", "bad_input", n0.flat)
    }
    with registry.session() as s:
        undo_last(s, n0.flat, author="ana")
        # a newer master flat of night 1 (same QC) now covers night 1's exposure
        old = s.scalar(select(CalibrationFrame).where(CalibrationFrame.product_id == n1.flat))
        newer = add_product(s, "master_flat", data_id={"obs_set": "x"},
                            production_id=graph.production_id, job_id=None)  # fmt: skip
        s.add(CalibrationFrame(kind="master_flat", instrument=old.instrument, filter_tray="r",
                               night=old.night, valid_from=old.valid_from,
                               valid_until=old.valid_until, n_input=3, product_id=newer.id,
                               created=old.created + timedelta(hours=1)))  # fmt: skip
    stale = _stale(registry)
    assert set(stale) == set(n1.images)
    assert {c.kind for i in stale.values() for c in i.causes} == {"better_calibration"}
    assert {c.source_id for i in stale.values() for c in i.causes} == {newer.id}
    # only reduced_sci / one production asked for: the same query, filtered
    assert set(_stale(registry, product_type="master_flat")) == set()
    # another code version: every product the production made is stale for code
    code = _stale(registry, code_version="99.0")
    made = {n0.bias, n0.flat, *n0.images, n1.bias, n1.flat, *n1.images, newer.id}
    assert set(code) == made
    assert all("code" in {c.cause for c in i.causes} for i in code.values())
    # a newer production of the pipeline with another configuration
    get_or_create_production(registry, "nightly", "dev", {"refcat": "gaia"})
    conf = _stale(registry)
    assert set(conf) == made
    assert {c.cause for c in conf[n0.bias].causes} == {"configuration"}


def test_superseded_products_are_not_listed(registry, graph):
    n0 = graph.nights[0]
    other = get_or_create_production(registry, "nightly", "dev-r1", {"refcat": "pixelsim"})
    with registry.session() as s:
        set_validity(s, n0.flat, Validity.BAD, author="ana", reason="dust")
        old = s.get(Product, n0.images[0])
        add_product(s, "reduced_sci", data_id=dict(old.data_id), production_id=other, job_id=None)
    assert set(_stale(registry)) == {n0.images[1]}


def test_reprocess_plan_orders_the_flat_before_the_images_that_use_it(registry, graph):
    n0 = graph.nights[0]
    with registry.session() as s:
        set_validity(s, n0.bias, Validity.BAD, author="ana", reason="light leak")
        stale = stale_products(s)
        assert {i.id for i in stale} == {n0.flat, *n0.images}
        (plan,) = plan_reprocess(s, stale)
    assert [st.task for st in plan.steps] == ["master_flat", "single_epoch_ccd", "single_epoch_ccd"]
    assert [st.after for st in plan.steps] == [(), (0,), (0,)]
    assert plan.products == sorted([n0.flat, *n0.images])
    assert plan.steps[1].config["ccd_num"] == 1 and plan.source_production_id == graph.production_id


def test_make_returns_an_up_to_date_target_without_a_job(registry, graph):
    n0 = graph.nights[0]
    with registry.session(write=False) as s:
        jobs_before = s.scalar(select(func.count()).select_from(Job))
    done = make(registry, "reduced_sci", {"mosaic_id": n0.mosaic_id, "ccd": 1},
                production_id=graph.production_id)  # fmt: skip
    assert (done.status, done.product_id, done.job_id) == ("up_to_date", n0.images[0], None)
    with registry.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == jobs_before
    with pytest.raises(MakeError, match="makeable types"):
        make(registry, "tile", {"tile": 1}, production_id=graph.production_id)
    with pytest.raises(MakeError, match="needs ccd"):
        make(registry, "reduced_sci", {"mosaic_id": 1}, production_id=graph.production_id)
    # a missing CCD: one job, calibrations exist so no master is remade
    missing = make(registry, "reduced_sci", {"mosaic_id": n0.mosaic_id, "ccd": 3},
                   production_id=graph.production_id)  # fmt: skip
    assert missing.status == "submitted"
    assert [st.task for st in missing.plan.steps] == ["single_epoch_ccd"]
    with registry.session(write=False) as s:
        job = s.get(Job, missing.job_id)
        assert job.task == "remake" and job.config["steps"][0]["config"]["ccd_num"] == 3


def test_release_freezes_productions_and_flags_become_errata(registry, graph):
    n0 = graph.nights[0]
    with registry.session() as s:
        with pytest.raises(ReleaseError, match="at least one production"):
            create_release(s, "DR1", [], author="ana")
        info = create_release(s, "DR1", [graph.production_id], author="ana")
        assert info.contents[0].counts["reduced_sci"] == 4
        assert "reduced_sci 4" in info.notes and "code version" in info.notes
        with pytest.raises(ProductionFrozenError, match="DR1"):
            add_product(s, "reduced_sci", data_id={}, production_id=graph.production_id,
                         job_id=None)  # fmt: skip
    with registry.session() as s:
        with pytest.raises(ReleaseError, match="immutable"):
            create_release(s, "DR1", [graph.production_id], author="ana")
        change = set_validity(s, n0.images[0], Validity.BAD, author="bob", reason="satellite")
    assert change.errata == ("DR1",)
    with pytest.raises(ProductionFrozenError, match="frozen in data release 'DR1'"):
        get_or_create_production(registry, "nightly", "dev", {"refcat": "pixelsim"})
    with registry.session(write=False) as s:
        rel = get_release(s, "DR1")
        assert s.scalar(select(func.count()).select_from(Erratum)) == 1
        # the release's product rows were not changed but for the flag itself
        assert s.scalar(select(func.count()).select_from(Product)) == 1 + 2 * (7 + 2 + 2)
    assert len(rel.errata) == 1 and "satellite" in rel.errata[0]


@pytest.fixture
def cli(registry, tmp_path, monkeypatch):
    from surveydm.cli.common import console

    monkeypatch.setattr(console, "width", 250)
    monkeypatch.setenv("SURVEYDM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SURVEYDM_DATABASE_URL", registry.url)
    monkeypatch.delenv("SURVEYDM_CONFIG", raising=False)
    from surveydm.cli.main import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_cli_lineage_flag_status_and_reprocess_dry_run(registry, graph, cli):
    n0 = graph.nights[0]
    res = cli("lineage", f"detection:{n0.detection}", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["root"] == n0.images[1]
    res = cli("lineage", f"product:{n0.images[0]}")
    assert res.exit_code == 0 and "master_flat" in res.output and "valid 2026-11-20" in res.output
    res = cli("dependents", f"product:{n0.flat}", "-f", "prov")
    assert res.exit_code == 0 and '"wasDerivedFrom"' in res.output
    res = cli("lineage", "nothing/here.fits")
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
    res = cli("flag", f"product:{n0.flat}", "--bad")
    assert res.exit_code == 2 and "say why" in res.output
    res = cli("flag", f"product:{n0.flat}", "--bad", "--reason", "dust", "--author", "ana")
    assert res.exit_code == 0 and "ok -> bad" in res.output
    res = cli("status", "--stale", "--json")
    listed = json.loads(res.output)
    assert sorted(i["product_id"] for i in listed) == sorted(n0.images)
    assert {c["cause"] for i in listed for c in i["causes"]} == {"data"}
    res = cli("reprocess", "--stale", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "2 product(s) would be remade" in res.output
    assert all(f"product:{p}" in res.output for p in n0.images)
    res = cli("flag", f"product:{n0.flat}", "--undo", "--history")
    assert res.exit_code == 0 and "(undoes " in res.output
    with registry.session(write=False) as s:
        assert s.get(Product, n0.flat).validity == "ok"
        assert s.scalar(select(func.count()).select_from(Production)) == 1


def test_0006_keeps_products_and_maps_invalid_to_bad(db_url):
    from alembic import command
    from sqlalchemy import create_engine, text

    from surveydm.db.migrate import alembic_config, current, head, upgrade

    command.downgrade(alembic_config(db_url), "0005")
    engine = create_engine(db_url)
    insert = text(
        "INSERT INTO product (uuid, product_type, data_id, quality, valid, created) "
        "VALUES (:u, 'raw', '{}', 'pass', :v, CURRENT_TIMESTAMP)"
    )
    try:
        with engine.begin() as conn:
            conn.execute(insert, {"u": "0" * 32, "v": True})
            conn.execute(insert, {"u": "1" * 32, "v": False})
        upgrade(db_url)
        assert current(db_url) == head()
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT valid, validity FROM product ORDER BY id")).all()
        assert [(bool(v), s) for v, s in rows] == [(True, "ok"), (False, "bad")]
    finally:
        engine.dispose()


def test_five_line_script_doctests_run(registry, graph):
    import doctest

    from surveydm.pipelines.lineage import navigate

    assert graph.nights[0].flat == 10  # the doctest names it
    result = doctest.testmod(
        navigate, extraglobs={"registry": registry}, optionflags=doctest.ELLIPSIS
    )
    assert result.attempted >= 5 and result.failed == 0, result
    table = navigate.Survey(registry).images(band="r")
    assert len(table) == 4 and list(table["bkg_std"]) == [11.0, 12.0, 16.0, 17.0]


def test_bad_inputs_of_one_product_type_flagged_or_failed(registry, graph):
    from surveydm.pipelines.lineage.stale import bad_inputs

    n0, n1 = graph.nights
    with registry.session() as s:
        set_validity(s, n0.flat, Validity.BAD, author="ana", reason="dust")
        s.get(Product, n1.bias).quality = "fail"
    images = select(Product.id).where(Product.product_type == "reduced_sci")
    with registry.session(write=False) as s:
        found = bad_inputs(s, images)
        flats_only = bad_inputs(s, images, role="flat")
        flagged_only = bad_inputs(s, images, failed_qc=False)
    assert sorted(found) == sorted(n0.images + n1.images)
    assert {(c.kind, c.source_id) for i in n0.images for c in found[i]} == {("bad_input", n0.flat)}
    assert {(c.kind, c.source_id) for i in n1.images for c in found[i]} == {
        ("failed_input", n1.bias)}  # fmt: skip
    assert sorted(flats_only) == sorted(flagged_only) == sorted(n0.images)
