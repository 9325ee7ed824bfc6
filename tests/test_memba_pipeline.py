"""memba in the job system, on SQLite and PostgreSQL: forced photometry jobs per reduced image
and co-add jobs per chunk of sources, co-added fluxes against the truth, re-runs that add only
a new night's image and never duplicate rows, and bad input (no deep reference catalog)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import func, select

from memba_support import add_reduced_image, make_truth, write_deep_refcat
from surveydm.db import Registry
from surveydm.db.models.jobs import Job
from surveydm.db.models.multiepoch import ForcedAperture, ForcedApertureCoadd, MembaRefCat
from surveydm.db.models.production import Product, ProductInput
from surveydm.pipelines.memba import run_memba
from surveydm.pipelines.memba.refcat import load_deep_refcat
from surveydm.pipelines.refcat import RefCatError

NIGHTS = [dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)]


def _count(reg: Registry, model, **where) -> int:  # noqa: ANN001
    with reg.session(write=False) as s:
        q = select(func.count()).select_from(model).filter_by(**where)
        return int(s.scalar(q))


def test_memba_coadds_match_the_truth_and_reruns_add_only_new_images(settings, tmp_path):
    reg = Registry(settings.resolved_database_url)
    truth = make_truth()
    load_deep_refcat(reg, write_deep_refcat(truth, tmp_path / "deep.fits"), "deep")
    seeings = {"NB455": [0.9, 1.2, 1.0], "r": [1.1, 0.8]}
    seed = 0
    for band, fwhms in seeings.items():
        for night, fwhm in zip(NIGHTS, fwhms, strict=False):
            seed += 1
            add_reduced_image(settings, reg, truth, night=night, band=band, seed=seed,
                              fwhm_arcsec=fwhm)  # fmt: skip

    first = run_memba(settings, refcat="deep", processes=0, chunk=20)
    n = len(truth.ref_id)
    assert first.images == 5 and first.jobs_by_status == {"done": 1 + 5 + 2}
    assert first.forced_rows == 5 * n and first.coadd_rows == 2 * n
    with reg.session(write=False) as s:
        rows = s.execute(
            select(ForcedApertureCoadd.ref_id, ForcedApertureCoadd.band, ForcedApertureCoadd.flux,
                   ForcedApertureCoadd.flux_error, ForcedApertureCoadd.n_coadd)
        ).all()  # fmt: skip
        assert s.get(MembaRefCat, first.production_id).ref_cat == "deep"
        # lineage: each image's forced photometry product names the image and the catalog
        roles = s.execute(
            select(ProductInput.role, func.count())
            .join(Product, Product.id == ProductInput.product_id)
            .where(Product.product_type == "forced_aperture")
            .group_by(ProductInput.role)
        ).all()  # fmt: skip
    assert dict(roles) == {"image": 5, "refcat": 5}
    index = {r: i for i, r in enumerate(truth.ref_id)}
    ratio, pull = [], []
    for ref_id, band, flux, err, n_coadd in rows:
        assert n_coadd == len(seeings[band])
        true = truth.flux[band][index[ref_id]]
        ratio.append(flux / true)
        pull.append((flux - true) / err)
    ratio, pull = np.array(ratio), np.array(pull)
    assert abs(np.median(ratio) - 1) < 0.005, np.median(ratio)
    width = 1.4826 * np.median(np.abs(pull - np.median(pull)))
    assert 0.7 < width < 1.3, width

    # nothing new: no job, no row
    again = run_memba(settings, refcat="deep", processes=0, chunk=20)
    assert again.run == 2 and again.images == 0
    assert again.forced_rows == first.forced_rows and again.coadd_rows == first.coadd_rows

    # a new night's NB455 image: one forced job, the NB455 co-adds now combine 4 epochs
    add_reduced_image(settings, reg, truth, night=dt.date(2026, 11, 23), band="NB455",
                      seed=99, fwhm_arcsec=1.0)  # fmt: skip
    third = run_memba(settings, refcat="deep", processes=0, chunk=20)
    assert third.images == 1 and third.jobs_by_status.get("done") == 1 + 1 + 2
    assert third.forced_rows == 6 * n and third.coadd_rows == 2 * n
    assert _count(reg, ForcedApertureCoadd, band="NB455", n_coadd=4, run=3) == n
    assert _count(reg, ForcedApertureCoadd, band="r", run=1) == n
    with reg.session(write=False) as s:
        dup = s.execute(
            select(ForcedAperture.image_id, ForcedAperture.ref_id)
            .group_by(ForcedAperture.image_id, ForcedAperture.ref_id)
            .having(func.count() > 1)
        ).all()  # fmt: skip
        assert dup == []
        assert s.scalar(select(func.count()).select_from(Job).where(Job.task == "memba")) == 3
    reg.dispose()


def test_memba_without_a_deep_catalog_says_how_to_load_one(settings):
    with pytest.raises(RefCatError, match="memba load-refcat"):
        run_memba(settings, refcat="nope", processes=0)
