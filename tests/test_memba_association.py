"""Detection-to-object association (DVO-like) against truth: purity and completeness, order
independence, same-image splits; and the partition jobs on SQLite and PostgreSQL, where a new
night updates its partitions without duplicating objects."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import func, insert, select

from memba_support import add_reduced_image, make_truth
from surveydm.db import Registry
from surveydm.db.models.calibration import Detection
from surveydm.db.models.multiepoch import DvoMeasure, DvoObject, DvoObjectBand
from surveydm.db.spatial import healpix_index
from surveydm.pipelines.association import run_association
from surveydm.pipelines.productions import get_or_create_production
from surveydm.reduction.association import associate, band_means


def _epochs(rng, ra0, dec0, n_epochs, sigma_arcsec=0.1, detect=0.9):  # noqa: ANN001
    """Detections of objects (ra0, dec0) on ``n_epochs`` images with position noise."""
    ra, dec, image, truth = [], [], [], []
    cosd = np.cos(np.radians(dec0))
    for e in range(n_epochs):
        idx = np.flatnonzero(rng.random(len(ra0)) < detect)
        ra.append(ra0[idx] + rng.normal(0, sigma_arcsec, idx.size) / 3600 / cosd[idx])
        dec.append(dec0[idx] + rng.normal(0, sigma_arcsec, idx.size) / 3600)
        image.append(np.full(idx.size, e))
        truth.append(idx)
    return tuple(np.concatenate(v) for v in (ra, dec, image, truth))


def purity_completeness(label: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Purity: fraction of objects whose detections all come from one true object;
    completeness: fraction of true objects whose detections all land in one object."""
    pure = [len(np.unique(truth[label == k])) == 1 for k in np.unique(label)]
    whole = [len(np.unique(label[truth == t])) == 1 for t in np.unique(truth)]
    return float(np.mean(pure)), float(np.mean(whole))


def test_isolated_objects_are_associated_purely_completely_and_in_any_order():
    rng = np.random.default_rng(3)
    n = 3000
    ra0, dec0 = 150 + rng.uniform(0, 0.2, n), 2 + rng.uniform(0, 0.2, n)
    ra, dec, image, truth = _epochs(rng, ra0, dec0, 5)
    res = associate(ra, dec, image, 1.0)
    # isolated: no other true object within 3 arcsec
    sep = np.hypot((ra0[:, None] - ra0) * np.cos(np.radians(2.1)), dec0[:, None] - dec0) * 3600
    np.fill_diagonal(sep, np.inf)
    isolated = np.isin(truth, np.flatnonzero(sep.min(axis=1) > 3.0))
    purity, completeness = purity_completeness(res.label[isolated], truth[isolated])
    assert purity >= 0.995 and completeness >= 0.995, (purity, completeness)
    perm = rng.permutation(len(ra))
    again = associate(ra[perm], dec[perm], image[perm], 1.0)
    assert np.array_equal(again.label, res.label[perm])


def test_two_close_objects_on_the_same_image_are_split():
    ra0, dec0 = np.array([150.0, 150.0 + 0.8 / 3600]), np.array([2.0, 2.0])
    ra, dec = np.repeat(ra0, 3), np.repeat(dec0, 3)
    image = np.tile(np.arange(3), 2)
    res = associate(ra, dec, image, 1.0)
    assert res.n_objects == 2
    assert len(set(res.label[:3])) == 1 and len(set(res.label[3:])) == 1
    means = band_means(res.label, np.array(["r", "r", "g"] * 2), np.full(6, 20.0), np.ones(6))
    assert sorted(means.n.tolist()) == [1, 1, 2, 2]
    with pytest.raises(ValueError, match="radius"):
        associate(ra, dec, image, 0.0)


def _insert_detections(reg, settings, image_ids, truth_ids, rng, sky):  # noqa: ANN001
    """Detections of the true objects ``truth_ids`` on each image; returns truth per row id."""
    pid = get_or_create_production(reg, "nightly", settings.release, {"refcat": "test"})
    owner = {}
    for image_id in image_ids:
        ra = sky.ra[truth_ids] + rng.normal(0, 0.1, truth_ids.size) / 3600
        dec = sky.dec[truth_ids] + rng.normal(0, 0.1, truth_ids.size) / 3600
        rows = [
            {
                "image_id": image_id,
                "production_id": pid,
                "band": "r",
                "x": 0.0,
                "y": 0.0,
                "ra": float(a),
                "dec": float(d),
                "healpix": int(healpix_index(a, d)),
                "mag": 20.0 + 0.01 * int(t),
                "mag_err": 0.02,
                "flags": 0,
            }  # fmt: skip
            for a, d, t in zip(ra, dec, truth_ids, strict=True)
        ]
        with reg.session() as s:
            ids = s.scalars(insert(Detection).returning(Detection.id), rows).all()
        owner.update(zip(ids, truth_ids.tolist(), strict=True))
    return owner


def test_partition_jobs_associate_nights_and_update_only_what_is_new(settings):
    reg = Registry(settings.resolved_database_url)
    sky = make_truth(seed=2, n_side=5)
    rng = np.random.default_rng(0)
    ids = np.arange(len(sky.ra))
    images = [
        add_reduced_image(
            settings,
            reg,
            sky,
            night=dt.date(2026, 11, 20 + k),
            band="r",
            seed=40 + k,
            fwhm_arcsec=1.0,
        )  # fmt: skip
        for k in range(3)
    ]
    owner = _insert_detections(reg, settings, images[:2], ids, rng, sky)
    first = run_association(settings, processes=0)
    assert first.jobs_by_status.get("failed", 0) == 0 and first.partitions >= 1
    assert first.objects == len(ids) and first.measures == 2 * len(ids)
    owner.update(_insert_detections(reg, settings, images[2:], ids, rng, sky))
    second = run_association(settings, processes=0)
    assert second.objects == len(ids) and second.measures == 3 * len(ids)
    with reg.session(write=False) as s:
        members = s.execute(select(DvoMeasure.detection_id, DvoMeasure.object_id)).all()
        bands = s.execute(select(DvoObjectBand.n_measurements, DvoObjectBand.mag)).all()
        n_obj = s.scalar(select(func.count()).select_from(DvoObject))
    label = np.array([o for _, o in members])
    truth = np.array([owner[d] for d, _ in members])
    assert purity_completeness(label, truth) == (1.0, 1.0)
    assert n_obj == len(ids) and all(n == 3 for n, _ in bands)
    assert sorted(round(m, 2) for _, m in bands) == sorted(round(20.0 + 0.01 * t, 2) for t in ids)
    # nothing new: no partition job, nothing rewritten
    third = run_association(settings, processes=0)
    assert third.partitions == 0 and third.objects == len(ids)
    reg.dispose()
