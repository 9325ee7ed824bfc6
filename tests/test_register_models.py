"""Registry models of raw data: relations, uniqueness, comments (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet, Project


def _file(path: str) -> ArchiveFile:
    return ArchiveFile(path=path, size=10, adler32="00000001", md5="0" * 32)


def _obs_set(session) -> ObsSet:
    project = Project(name="PAUS", description="narrow-band survey")
    obs = ObsSet(
        obs_set="20261120_001",
        night=date(2026, 11, 20),
        instrument="paucam-mini",
        project=project,
        manifest={"files": []},
    )
    session.add(obs)
    session.flush()
    return obs


def test_obs_set_mosaic_images_round_trip(registry):
    with registry.session() as s:
        obs = _obs_set(s)
        f = _file("raw/2026-11-20/20261120_001/a.fits")
        m = Mosaic(
            obs_set=obs,
            kind="science",
            filename="a.fits",
            archive_file=f,
            date_obs=datetime(2026, 11, 21, 1, 2, 3, tzinfo=UTC),
            exptime=90.0,
            filter_tray="NB455",
            ra=150.0,
            dec=2.0,
        )
        m.images = [Image(ccd_num=1, amp_num=None), Image(ccd_num=1, amp_num=1, mean=1000.0)]
        s.add(m)
    with registry.session(write=False) as s:
        m = s.scalars(select(Mosaic)).one()
        assert m.obs_set.obs_set == "20261120_001"
        assert m.obs_set.project.name == "PAUS"
        assert m.archive_file.path.endswith("a.fits")
        assert [(i.ccd_num, i.amp_num) for i in m.images] == [(1, None), (1, 1)]
        assert m.date_obs.replace(tzinfo=UTC) == datetime(2026, 11, 21, 1, 2, 3, tzinfo=UTC)
        assert s.scalars(select(ObsSet.night)).one() == date(2026, 11, 20)


def test_same_file_cannot_be_registered_twice(registry):
    with registry.session() as s:
        obs = _obs_set(s)
        f = _file("raw/x/y/a.fits")
        s.add(Mosaic(obs_set=obs, kind="bias", filename="a.fits", archive_file=f))
    with pytest.raises(IntegrityError), registry.session() as s:
        obs = s.scalars(select(ObsSet)).one()
        f = s.scalars(select(ArchiveFile)).one()
        s.add(Mosaic(obs_set=obs, kind="bias", filename="a.fits", archive_file=f))
        s.flush()


@pytest.mark.parametrize("amp", [None, 2])
def test_one_image_row_per_ccd_and_amp(registry, amp):
    with registry.session() as s:
        obs = _obs_set(s)
        m = Mosaic(obs_set=obs, kind="bias", filename="a.fits", archive_file=_file("raw/a"))
        m.images = [Image(ccd_num=3, amp_num=amp)]
        s.add(m)
    with pytest.raises(IntegrityError), registry.session() as s:
        m = s.scalars(select(Mosaic)).one()
        s.add(Image(mosaic_id=m.id, ccd_num=3, amp_num=amp))
        s.flush()


def test_every_column_is_documented(registry):
    insp = inspect(registry.engine)
    for table in ("project", "obs_set", "mosaic", "image", "archive_file"):
        cols = insp.get_columns(table)
        assert cols, table
        if registry.dialect == "postgresql":  # SQLite keeps no comments
            missing = [c["name"] for c in cols if c["name"] != "id" and not c.get("comment")]
            assert missing == [], f"{table}: {missing}"
    names = {c["name"] for c in insp.get_columns("mosaic")}
    assert {"healpix", "filter_tray", "median_psf_fwhm", "zp_nightly", "qc_status"} <= names
