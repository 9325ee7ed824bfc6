"""Registration of archived raw files: headers through the instrument mapping, classification,
filters from the tray, pixel statistics, idempotence and rejected files (SQLite, PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from surveydm.archive import Archive
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet
from surveydm.db.spatial import healpix_index
from surveydm.instruments import load_instrument
from surveydm.pipelines.raw_exposure import MissingKeyword, RegistrationError
from surveydm.pipelines.register import (
    obs_set_files,
    register_file,
    register_obs_set,
    unregistered_obs_sets,
)
from surveydm.pipelines.transfer import transfer_buffer
from test_ingest_support import make_obs_set, write_manifest, write_raw

OBS = "20261120_001"
RAW_DIR = f"raw/2026-11-20/{OBS}"


@pytest.fixture
def archive(tmp_path) -> Archive:
    return Archive(tmp_path / "archive")


def _transferred(registry, archive, tmp_path, tiny, mutate=None) -> Path:
    """A transferred obs set (bias, bias, flat, science); ``mutate(dir, inst)`` may replace
    files before the manifest is written."""
    buffer = tmp_path / "buffer"
    d = make_obs_set(buffer, OBS, tiny)
    if mutate:
        mutate(d, load_instrument(tiny))
        kinds = ("bias", "bias", "flat", "science")
        files = [(f"{OBS}_{i:04d}.fits", k) for i, k in enumerate(kinds, 1)]
        write_manifest(d, files, instrument=str(tiny))
    report = transfer_buffer(registry, archive, buffer)
    assert report.obs_sets[0].status == "done"
    return d


def test_register_obs_set_inserts_mosaics_ccds_and_amps(registry, archive, tmp_path, tiny):
    _transferred(registry, archive, tmp_path, tiny)
    inst = load_instrument(tiny)
    report = register_obs_set(registry, archive, OBS)
    assert report.ok and len(report.registered) == 4 and not report.already
    assert [r.kind for r in report.registered] == ["bias", "bias", "flat", "science"]
    assert all((r.n_ccds, r.n_amps) == (2, 8) for r in report.registered)
    with registry.session(write=False) as s:
        mosaics = s.scalars(select(Mosaic).order_by(Mosaic.exp_num)).all()
        assert [m.exp_num for m in mosaics] == [1, 2, 3, 4]
        sci = mosaics[3]
        assert sci.kind == "science" and sci.filter_tray == "NB455-525"
        assert sci.exptime == 10.0 and sci.object == "COSMOS" and sci.airmass == 1.2
        assert sci.amb_temp == 8.5 and sci.nextend == 8 and sci.instrument == "paucam-tiny"
        assert sci.healpix == int(healpix_index(150.1, 2.2))
        assert sci.date_obs is not None and sci.mjd_obs == pytest.approx(61000.0 + 4 / 1440, 1e-3)
        assert sci.archive_file.path.startswith(RAW_DIR)
        assert sci.obs_set.obs_set == OBS
        product = s.get(Product, sci.product_id)
        assert product.product_type == "raw" and product.file_id == sci.archive_file_id
        assert product.data_id["filename"] == sci.filename

        ccd_rows = {i.ccd_num: i for i in sci.images if i.amp_num is None}
        assert ccd_rows[1].filter == "NB455" and ccd_rows[1].waveband == "narrow"
        assert ccd_rows[9].filter == "g" and ccd_rows[9].waveband == "broad"
        assert ccd_rows[1].wavelength == pytest.approx(455.0)
        assert (ccd_rows[1].naxis1, ccd_rows[1].naxis2) == (72, 128)
        for img in sci.images:
            if img.amp_num is None:
                continue
            amp = inst.ccd(img.ccd_num).amp(img.amp_num)
            assert img.gain == pytest.approx(amp.gain) and img.rdnoise == pytest.approx(
                amp.read_noise
            )
            assert (img.naxis1, img.naxis2) == (48, 64)
            assert img.overscan == pytest.approx(amp.bias_level, abs=1.5)
            assert img.mean == pytest.approx(amp.bias_level + 500, abs=1.5)
            assert img.std == pytest.approx(amp.read_noise / amp.gain, rel=0.15)
            assert img.image_num >= 1

        flat = mosaics[2]
        amp_means = [i.mean - i.overscan for i in flat.images if i.amp_num is not None]
        assert np.allclose(amp_means, 20000, atol=3)
        bias = mosaics[0]
        assert bias.exptime == 0.0
        assert all(abs(i.mean - i.overscan) < 1.5 for i in bias.images)


def test_registering_again_changes_nothing(registry, archive, tmp_path, tiny):
    _transferred(registry, archive, tmp_path, tiny)
    register_obs_set(registry, archive, OBS)
    with registry.session(write=False) as s:
        counts = (
            s.scalar(select(func.count()).select_from(Mosaic)),
            s.scalar(select(func.count()).select_from(Image)),
            s.scalar(select(func.count()).select_from(Product)),
        )
    assert counts == (4, 40, 4)
    again = register_obs_set(registry, archive, OBS)
    assert not again.registered and len(again.already) == 4
    one = register_file(registry, archive, f"{RAW_DIR}/{OBS}_0003.fits")
    assert not one.created and one.kind == "flat"
    with registry.session(write=False) as s:
        assert (
            s.scalar(select(func.count()).select_from(Mosaic)),
            s.scalar(select(func.count()).select_from(Image)),
            s.scalar(select(func.count()).select_from(Product)),
        ) == counts
    assert unregistered_obs_sets(registry) == []


def test_registration_records_the_md5_of_the_archived_copy(registry, archive, tmp_path, tiny):
    _transferred(registry, archive, tmp_path, tiny)
    rel = f"{RAW_DIR}/{OBS}_0001.fits"
    with registry.session(write=False) as s:
        assert s.scalars(select(ArchiveFile.md5).where(ArchiveFile.path == rel)).one() is None
    register_file(registry, archive, rel)
    with registry.session(write=False) as s:
        md5 = s.scalars(select(ArchiveFile.md5).where(ArchiveFile.path == rel)).one()
    assert md5 == hashlib.md5(archive.abspath(rel).read_bytes()).hexdigest()


def test_archived_copy_changed_since_the_transfer_is_refused(registry, archive, tmp_path, tiny):
    _transferred(registry, archive, tmp_path, tiny)
    rel = f"{RAW_DIR}/{OBS}_0002.fits"
    path = archive.abspath(rel)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # one bit in the last amplifier's pixels: still a readable FITS file
    path.write_bytes(bytes(data))
    with pytest.raises(RegistrationError, match="adler32 .* the transfer recorded"):
        register_file(registry, archive, rel)
    with registry.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Mosaic)) == 0
        assert s.scalars(select(ArchiveFile.md5).where(ArchiveFile.path == rel)).one() is None


def test_header_without_required_keyword_is_rejected_by_name(registry, archive, tmp_path, tiny):
    def drop(d, inst):
        (d / f"{OBS}_0004.fits").unlink()
        write_raw(d / f"{OBS}_0004.fits", inst, "science", drop_keyword="FILTRAY", seed=4)

    _transferred(registry, archive, tmp_path, tiny, mutate=drop)
    with pytest.raises(MissingKeyword, match=f"{OBS}_0004.fits: primary header has no FILTRAY"):
        register_file(registry, archive, f"{RAW_DIR}/{OBS}_0004.fits")
    report = register_obs_set(registry, archive, OBS)
    assert len(report.registered) == 3
    ((name, why),) = report.rejected
    assert name == f"{OBS}_0004.fits" and "FILTRAY" in why and "filter tray" in why
    with registry.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Mosaic)) == 3
        assert s.scalar(select(func.count()).select_from(Image)) == 30  # nothing half-inserted
        assert "FILTRAY" in s.scalars(select(ObsSet.log)).one()
    assert archive.abspath(f"{RAW_DIR}/{OBS}_0004.fits").exists()  # raw data is kept


def test_file_truncated_before_the_manifest_is_rejected_at_registration(
    registry, archive, tmp_path, tiny
):
    """The DAQ computed adler32 of an already-broken file: transfer accepts it (the bytes are
    what the manifest says), registration finds the FITS incomplete."""

    def truncate(d, inst):
        f = d / f"{OBS}_0002.fits"
        f.write_bytes(f.read_bytes()[:30_000])  # mid-extension, not a 2880 multiple
        g = d / f"{OBS}_0003.fits"
        g.write_bytes(g.read_bytes()[: 2880 * 20])  # on a block boundary: extensions lost

    _transferred(registry, archive, tmp_path, tiny, mutate=truncate)
    report = register_obs_set(registry, archive, OBS)
    reasons = dict(report.rejected)
    assert set(reasons) == {f"{OBS}_0002.fits", f"{OBS}_0003.fits"}
    assert "not a complete FITS file" in reasons[f"{OBS}_0002.fits"]
    assert "truncated" in reasons[f"{OBS}_0003.fits"]
    assert [r.filename for r in report.registered] == [f"{OBS}_0001.fits", f"{OBS}_0004.fits"]


def test_unknown_tray_for_science_and_unknown_obstype_are_rejected(
    registry, archive, tmp_path, tiny
):
    def weird(d, inst):
        write_raw(d / "x.fits", inst, "science", tray="NOPE", seed=9)
        (d / "x.fits").replace(d / f"{OBS}_0004.fits")
        write_raw(d / "y.fits", inst, "skyflat-ish", seed=8)
        (d / "y.fits").replace(d / f"{OBS}_0002.fits")

    _transferred(registry, archive, tmp_path, tiny, mutate=weird)
    reasons = dict(register_obs_set(registry, archive, OBS).rejected)
    assert "unknown filter tray 'NOPE'" in reasons[f"{OBS}_0004.fits"]
    assert "unknown observation type 'SKYFLAT-ISH'" in reasons[f"{OBS}_0002.fits"]


def test_bias_with_unknown_tray_is_registered_without_filter(registry, archive, tmp_path, tiny):
    def blank(d, inst):
        (d / f"{OBS}_0001.fits").unlink()
        write_raw(d / f"{OBS}_0001.fits", inst, "bias", tray="NONE", seed=1)

    _transferred(registry, archive, tmp_path, tiny, mutate=blank)
    reg = register_file(registry, archive, f"{RAW_DIR}/{OBS}_0001.fits")
    assert reg.created and reg.kind == "bias" and reg.filter_tray == "NONE"
    with registry.session(write=False) as s:
        assert {i.filter for i in s.get(Mosaic, reg.mosaic_id).images} == {None}


def test_register_needs_a_recorded_file_and_a_registered_obs_set(registry, archive):
    with pytest.raises(RegistrationError, match="no such file"):
        register_file(registry, archive, "raw/2026-11-20/x/y.fits")
    with pytest.raises(RegistrationError, match="not registered"):
        register_obs_set(registry, archive, "20991231_001")


def test_obs_set_files_lists_manifest_order_and_archive_ids(registry, archive, tmp_path, tiny):
    _transferred(registry, archive, tmp_path, tiny)
    files = obs_set_files(registry, OBS)
    assert [f[0] for f in files] == [f"{OBS}_{i:04d}.fits" for i in (1, 2, 3, 4)]
    assert all(fid is not None and path.startswith(RAW_DIR) for _, path, fid in files)
    assert unregistered_obs_sets(registry) == [OBS]
