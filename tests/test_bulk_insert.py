"""Bulk inserts (``COPY`` on PostgreSQL, ``executemany`` on SQLite) in the caller's
transaction: rows land as given, NULLs stay NULL, a failure rolls everything back."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from surveydm.db import Registry
from surveydm.db.base import utcnow
from surveydm.db.bulk import bulk_insert
from surveydm.db.models.jobs import Tag
from surveydm.orchestration import submit

T = Tag.__table__


def _rows(job_id: int, n: int) -> list[dict]:
    now = utcnow()
    return [
        {
            "job_id": job_id,
            "name": f"n{i}",
            "value": "tab\there, new\nline, back\\slash, é",
            "attempt": None if i % 2 else i,
            "time": now,
        }
        for i in range(n)
    ]


def test_bulk_insert_rows_as_given(registry: Registry) -> None:
    job = submit(registry, "bulk_test", check_task=False)
    with registry.session() as s:
        assert bulk_insert(s, T, _rows(job, 500)) == 500
    with registry.session(write=False) as s:
        got = s.execute(select(T.c.name, T.c.value, T.c.attempt).order_by(T.c.id)).all()
    assert len(got) == 500
    assert got[0] == ("n0", "tab\there, new\nline, back\\slash, é", 0)
    assert got[1].attempt is None  # None -> NULL, not 0 or "None"
    assert [r.name for r in got] == [f"n{i}" for i in range(500)]


def test_bulk_insert_fails_whole(registry: Registry) -> None:
    """A foreign-key violation in one row: nothing of the transaction is kept."""
    job = submit(registry, "bulk_test", check_task=False)
    rows = _rows(job, 50)
    rows[30]["job_id"] = job + 999  # no such job
    with pytest.raises(IntegrityError), registry.session() as s:
        s.add(Tag(job_id=job, name="before", value="x"))
        bulk_insert(s, T, rows)
        s.flush()  # SQLite checks foreign keys per statement: already raised
    with registry.session(write=False) as s:
        assert s.execute(select(func.count()).select_from(T)).scalar_one() == 0


def test_bulk_insert_rejects_bad_rows(registry: Registry) -> None:
    job = submit(registry, "bulk_test", check_task=False)
    with registry.session() as s:
        with pytest.raises(ValueError, match="not columns of tag: colour"):
            bulk_insert(s, T, [{"job_id": job, "name": "a", "colour": "red"}])
        with pytest.raises(ValueError, match="same columns"):
            bulk_insert(s, T, [{"job_id": job, "name": "a"}, {"job_id": job}])
        assert bulk_insert(s, T, []) == 0


def test_detections_of_a_catalog_land_as_measured(registry: Registry) -> None:
    """The single-epoch path: a catalog's detection rows (NaN -> NULL, FWHM in arcsec) are
    copied in after the image row added in the same transaction."""
    from datetime import date

    import numpy as np
    from astropy.table import Table

    from surveydm.db.models.calibration import Detection
    from surveydm.db.models.raw import Image, Mosaic, ObsSet, Project
    from surveydm.pipelines.nightly.ccd_products import detection_rows

    n = 300
    rng = np.random.default_rng(3)
    cat = Table(
        {
            "ra": rng.uniform(150, 151, n),
            "dec": rng.uniform(2, 3, n),
            "x": rng.uniform(0, 2048, n),
            "y": rng.uniform(0, 4096, n),
            "fwhm": np.full(n, 4.0),
            "flags": np.arange(n) % 4,
            "flux_auto": rng.uniform(100, 1e5, n),
            "mag": np.where(np.arange(n) % 10 == 0, np.nan, 20.0),
        }
    )
    rows = detection_rows(cat, "NB455", None, pixel_scale=0.26)
    with registry.session() as s:
        obs = ObsSet(
            obs_set="20261120_001",
            night=date(2026, 11, 20),
            instrument="paucam",
            project=Project(name="PAUS"),
            manifest={"files": []},
        )
        mosaic = Mosaic(obs_set=obs, kind="red_science", filename="a.fits")
        image = Image(mosaic=mosaic, ccd_num=1)
        s.add(image)
        s.flush()
        for r in rows:
            r["image_id"] = image.id
        bulk_insert(s, Detection.__table__, rows)
    with registry.session(write=False) as s:
        got = s.execute(
            select(
                Detection.ra, Detection.flux_auto, Detection.mag, Detection.fwhm, Detection.flags
            ).order_by(Detection.id)
        ).all()
    assert len(got) == n
    assert np.allclose([g.ra for g in got], cat["ra"])
    assert np.allclose([g.flux_auto for g in got], cat["flux_auto"])
    assert [g.mag is None for g in got] == [i % 10 == 0 for i in range(n)]
    assert np.allclose([g.fwhm for g in got], 4.0 * 0.26)
    assert [g.flags for g in got] == [i % 4 for i in range(n)]
