"""Lineage, target processing and reprocessing on a reduced night, on SQLite and PostgreSQL:
``make`` of a missing master flat of an ingested night runs its job, and made again returns it
without a job; the lineage of a detection reaches its raw file, master bias and flat and the
reference catalog; flagging the master flat bad makes exactly the products that used it stale;
reprocessing remakes them in a new production with the next best flat, leaving the old ones in
place; ``make`` of an up-to-date image submits no job."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from surveydm.archive import Archive
from surveydm.config import settings_environment
from surveydm.db import Registry
from surveydm.db.models.calibration import Detection
from surveydm.db.models.jobs import Job
from surveydm.db.models.production import Product, ProductInput, Production
from surveydm.orchestration import run_local
from surveydm.pipelines.ingest import ingest
from surveydm.pipelines.lineage.flags import Validity, set_validity
from surveydm.pipelines.lineage.graph import lineage
from surveydm.pipelines.lineage.remake import make, plan_reprocess, reprocess
from surveydm.pipelines.lineage.resolve import resolve
from surveydm.pipelines.lineage.stale import stale_products
from surveydm.pipelines.night import run_night
from surveydm.pipelines.refcat import load_refcat
from surveydm.simulation import simulate_night

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def buffers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Night A: biases, flats and one science exposure of the 2-CCD mosaicam-mini; night B (the
    next): flats only, so its master flat is the next best for night A."""
    root = tmp_path_factory.mktemp("lineage_nights")
    a = simulate_night("mosaicam-mini", root / "a", night="2026-11-20", seed=8, n_bias=3,
                       n_flats_per_tray=3, n_science=1, n_test=3, n_focus=0,
                       trays=["r"])  # fmt: skip
    simulate_night("mosaicam-mini", root / "b", night="2026-11-21", seed=9, n_bias=0,
                   n_flats_per_tray=3, n_science=0, n_test=0, n_focus=0, trays=["r"])  # fmt: skip
    return {"a": root / "a", "b": root / "b", "refcat": a.refcat}


def _flat(s, obs_set: str) -> int:  # noqa: ANN001
    return s.scalar(
        select(Product.id).where(
            Product.product_type == "master_flat", Product.data_id["obs_set"].as_string() == obs_set
        )
    )


def _run(settings, job_id: int) -> None:  # noqa: ANN001
    report = run_local(settings.resolved_database_url, root_job_id=job_id, processes=2,
                       env=settings_environment(settings))  # fmt: skip
    assert report.summary.state == "done", report


def test_flag_a_master_flat_and_reprocess_with_the_next_best(settings, buffers):
    reg = Registry(settings.resolved_database_url)
    load_refcat(reg, buffers["refcat"], "pixelsim", replace=True)
    summary = run_night(settings, buffers["a"], processes=2, settle_seconds=0)
    assert not summary.failures, summary.failures
    # night B only ingested: its master flat is made on demand (target processing)
    assert ingest(reg, Archive(settings.archive_root), buffers["b"], settle_seconds=0).ok
    target = {"obs_set": "20261121_001", "filter_tray": "r"}
    made = make(reg, "master_flat", target, production_id=summary.production_id)
    assert made.status == "submitted" and [st.task for st in made.plan.steps] == ["master_flat"]
    _run(settings, made.job_id)
    again = make(reg, "master_flat", target, production_id=summary.production_id)
    assert again.status == "up_to_date" and again.job_id is None
    with reg.session() as s:
        det = s.scalar(select(Detection.id).order_by(Detection.id).limit(1))
        g = lineage(s, resolve(s, f"detection:{det}"))
        flat_a, flat_b = _flat(s, "20261120_001"), _flat(s, "20261121_001")
        old_images = set(
            s.scalars(select(Product.id).where(Product.product_type.like("reduced_%")))
        )
    # the detection's lineage: raw science file, master bias and flat, bad-pixel mask (and their
    # raw frames: 3 biases, 3 flats, 3 darks)
    types = sorted({n.product_type for n in g.nodes.values()})
    assert types == ["bad_pixel_mask", "master_bias", "master_flat", "raw", "reduced_sci", "refcat"]
    assert [n.id for n in g.of_type("master_flat")] == [flat_a]
    raws = [n.path for n in g.of_type("raw")]
    assert len(raws) == 1 + 3 + 3 + 3 and all((settings.archive_root / p).is_file() for p in raws)
    assert {r for r, _ in g.children(g.root)} == {"raw", "bias", "flat", "bpm", "refcat"}
    assert g.nodes[flat_a].calibration.night == "2026-11-20"
    assert g.nodes[g.root].job.worker and g.nodes[g.root].production.pipeline == "nightly"

    # flag night A's flat: exactly the bad-pixel mask built from it and the 2 CCDs x (sci, wht,
    # msk) that used the flat and that mask are stale
    with reg.session() as s:
        bpm = s.scalar(select(Product.id).where(Product.product_type == "bad_pixel_mask"))
        set_validity(s, flat_a, Validity.BAD, author="ana", reason="dust donut")
        stale = stale_products(s)
        plans = plan_reprocess(s, stale)
    assert {i.id for i in stale} == old_images | {bpm} and len(old_images) == 6
    assert [p.products for p in plans] == [sorted(old_images | {bpm})]  # what --dry-run lists

    done = reprocess(reg, stale, release="dev-r1")
    (sub,) = done
    _run(settings, sub.job_id)
    with reg.session(write=False) as s:
        new = s.scalars(select(Product).where(Product.production_id == sub.production_id)).all()
        flats_used = set(
            s.scalars(
                select(ProductInput.input_id).where(
                    ProductInput.product_id.in_([p.id for p in new]), ProductInput.role == "flat"
                )
            )
        )
        prod = s.get(Production, sub.production_id)
        # the old products are still there, untouched
        kept = set(s.scalars(select(Product.id).where(Product.id.in_(old_images))))
        assert s.scalar(select(func.count()).select_from(Job).where(Job.task == "remake")) == 2
        remaining = stale_products(s)
    remade = ["bad_pixel_mask"] + ["reduced_sci", "reduced_wht", "reduced_msk"] * 2
    assert sorted(p.product_type for p in new) == sorted(remade)
    assert flats_used == {flat_b}  # the next best master flat
    assert prod.release == "dev-r1" and prod.input_production_id is not None
    assert kept == old_images and remaining == []
    assert len(list((settings.archive_root / "red" / "dev-r1").glob("*/*.sci.fits"))) == 2

    # make of an up-to-date target returns it and submits no job
    with reg.session(write=False) as s:
        jobs = s.scalar(select(func.count()).select_from(Job))
        sci = next(p for p in new if p.product_type == "reduced_sci")
    target = {"mosaic_id": sci.data_id["mosaic_id"], "ccd": sci.data_id["ccd"]}
    result = make(reg, "reduced_sci", target, production_id=sub.production_id)
    assert (result.status, result.product_id) == ("up_to_date", sci.id)
    with reg.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == jobs
    reg.dispose()
