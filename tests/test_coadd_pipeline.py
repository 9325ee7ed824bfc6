"""The co-add pipeline end to end on both engines: a tiling in the registry, synthetic reduced
CCDs registered as the nightly pipeline records them, ``coadd`` -> ``coadd_tile`` per band ->
``tile_catalog``: files in red/<release>/tiles/, lineage, tile_image and tile_source rows,
fluxes against the truth, and the bad inputs left out."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from sqlalchemy import select

import surveydm.pipelines.coadd  # noqa: F401 (registers the tasks)
from coadd_data import make_exposure, make_field, register_reduced
from surveydm.archive import Archive
from surveydm.db.models.production import Product, ProductInput
from surveydm.db.models.raw import ArchiveFile
from surveydm.db.models.tiles import Tile, TileImage, TileSource
from surveydm.orchestration import Worker
from surveydm.pipelines.coadd.run import CoaddRequest, submit_coadd, summarize
from surveydm.pipelines.coadd.tiles import TilingError, TilingPreset, define_tiling, get_tiles

PRESET = TilingPreset(size_deg=0.025, pixel_scale=0.5, overlap_deg=0.0)
SEEING = {"g": [1.5, 1.3, 1.7, 1.4], "r": [1.0, 1.2, 1.4, 1.1]}
ZP = {"g": 25.3, "r": 25.0}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SURVEYDM_HOME", str(tmp_path))
    monkeypatch.setenv("SURVEYDM_RELEASE", "dr1")
    return tmp_path


def drain(registry, root):
    w = Worker(registry, root_id=root, lease_seconds=30, poll_interval=0.02)
    w.run(once=True)
    w.close()


def test_tiling_is_registered_with_coverage_and_fixed_geometry(registry, home):
    added = define_tiling(
        registry, "mini", PRESET, ra_range=(149.97, 150.03), dec_range=(1.95, 2.05)
    )
    assert added and all(n.startswith("mini-") for n in added)
    assert (
        define_tiling(registry, "mini", PRESET, ra_range=(149.97, 150.03), dec_range=(1.95, 2.05))
        == []
    )
    with registry.session(write=False) as s:
        tiles = get_tiles(s, tiling="mini")
        assert len(tiles) == len(added)
        t = tiles[0]
        assert t.naxis1 == 180 and t.projection == "TAN" and t.coverage["cells"]
        with pytest.raises(TilingError, match="unknown tile"):
            get_tiles(s, ["nope"])
    with pytest.raises(TilingError, match="exists with"):
        define_tiling(
            registry, "mini", TilingPreset(1.4, 0.55, 0.0), ra_range=(0, 1), dec_range=(0, 1)
        )


def test_coadd_tiles_in_two_bands_with_lineage_rows_and_truth(registry, home):
    define_tiling(registry, "mini", PRESET, ra_range=(149.98, 150.02), dec_range=(1.98, 2.02))
    with registry.session(write=False) as s:
        tile = min(get_tiles(s, tiling="mini"), key=lambda t: abs(t.ra - 150) + abs(t.dec - 2))
        name, ra0, dec0 = tile.name, tile.ra, tile.dec
    field = make_field(ra0, dec0, 0.011, 45, seed=3)
    store = Archive(home / "archive")
    good = {}
    for band in ("g", "r"):
        exps = [
            make_exposure(
                field,
                ra0 + dx / 3600,
                dec0 + dy / 3600,
                seeing=s,
                zp=ZP[band] + 0.03 * i,
                n_cosmics=30,
                trail=(i == 1),
                seed=10 * i + (band == "g"),
            )
            for i, (s, dx, dy) in enumerate(
                zip(SEEING[band], [0, 5, -4, 3], [0, -3, 4, 6], strict=True)
            )
        ]
        good[band] = register_reduced(registry, store, exps, band, "dr1", night="2026-11-20")
    # a failed-QC and an invalidated exposure: never co-added
    bad = make_exposure(field, ra0, dec0, seeing=1.0, zp=25.0, seed=99)
    failed = register_reduced(
        registry, store, [bad], "r", "dr1", night="2026-11-21", quality="fail"
    )
    invalid = register_reduced(registry, store, [bad], "r", "dr1", night="2026-11-22", valid=False)

    request = CoaddRequest(tiles=(name,), bright_mag=19.0)
    prod_id, root = submit_coadd(registry, request, "dr1")
    drain(registry, root)
    summary = summarize(registry, prod_id, root)
    assert summary.failures == 0, summary.counts
    assert [(t[0], t[1], t[2]) for t in summary.tiles] == [(name, "g", 4), (name, "r", 4)]

    with registry.session(write=False) as s:
        images = {ti.band: ti for ti in s.scalars(select(TileImage))}
        r = images["r"]
        # depth measured, PSF of the co-add between the best and worst seeing
        assert 22.0 < r.depth < 26.0 and 1.0 <= r.psf_fwhm <= 1.5
        assert 0 < r.rejected_fraction < 0.05 and r.area_fraction > 0.5
        assert r.completeness is not None and max(r.completeness["fraction"]) > 0.9
        # lineage: exactly the good reduced inputs of the band
        inputs = s.scalars(
            select(ProductInput.input_id).where(
                ProductInput.product_id == r.product_id, ProductInput.role == "reduced"
            )
        ).all()
        assert sorted(inputs) == sorted(good["r"])
        assert not set(inputs) & set(failed + invalid)
        files = {
            p.product_type: f.path
            for p, f in s.execute(
                select(Product, ArchiveFile)
                .join(ArchiveFile, Product.file_id == ArchiveFile.id)
                .where(Product.production_id == prod_id)
            )
        }
        assert (
            files["coadd_sci"] == f"red/dr1/tiles/{name}/{name}.g.sci.fits"
            or files["coadd_sci"] == f"red/dr1/tiles/{name}/{name}.r.sci.fits"
        )
        assert {"coadd_wht", "coadd_cnt", "coadd_psf", "coadd_cat_single", "coadd_cat_dual"} <= set(
            files
        )
        single = s.scalars(
            select(TileSource).where(TileSource.mode == "single", TileSource.band == "r")
        ).all()
        dual = s.scalars(select(TileSource).where(TileSource.mode == "dual")).all()
        tile_row = s.scalar(select(Tile).where(Tile.name == name))
    assert len(single) == r.n_sources > 20
    assert {d.band for d in dual} == {"g", "r"} and {d.detection_band for d in dual} == {"r"}
    # fluxes of bright isolated stars against the truth (co-add zero-point = r.zp)
    wcs_ra, wcs_dec = np.array([d.ra for d in single]), np.array([d.dec for d in single])
    sep_deg = np.hypot(
        (field.ra[:, None] - wcs_ra[None]) * np.cos(np.radians(dec0)),
        field.dec[:, None] - wcs_dec[None],
    )
    j = sep_deg.argmin(axis=1)
    dstar = (
        np.hypot(
            (field.ra[:, None] - field.ra[None]) * np.cos(np.radians(dec0)),
            field.dec[:, None] - field.dec[None],
        )
        * 3600
    )
    np.fill_diagonal(dstar, np.inf)
    bright = (field.mag < 21) & (sep_deg.min(axis=1) < 0.5 / 3600) & (dstar.min(axis=1) > 7)
    flux = np.array([single[k].flux_aper[-1] for k in j[bright]])
    ratio = flux / 10 ** (-0.4 * (field.mag[bright] - r.zp))
    assert bright.sum() >= 5 and abs(np.median(ratio) - 1) < 0.01  # 6" aperture: all the flux
    # dual mode: g - r colour of bright true stars (flat spectra in the truth: 0 mag)
    by_num = {}
    for d in dual:
        by_num.setdefault(d.number, {})[d.band] = d
    colours = []
    for v in by_num.values():
        dd = np.hypot((field.ra - v["r"].ra) * np.cos(np.radians(dec0)), field.dec - v["r"].dec)
        k = int(dd.argmin())
        if dd[k] < 0.5 / 3600 and field.mag[k] < 20 and v["g"].flux_aper[2]:
            colours.append(-2.5 * np.log10(v["g"].flux_aper[2] / v["r"].flux_aper[2]))
    assert len(colours) >= 5 and abs(np.median(colours)) < 0.02, colours
    assert tile_row.name == name

    # the count file carries the exposure-time, tile-area, rejection and bright-star maps
    from astropy.io import fits

    cnt = [p for p in files.values() if p.endswith(".cnt.fits")][0]
    with fits.open(store.abspath(cnt)) as hdul:
        assert [h.name for h in hdul[1:]] == ["EXPTIME", "AREA", "REJECTED", "BRIGHT"]
        assert hdul["AREA"].data.mean() > 0.5 and 0 < hdul["BRIGHT"].data.mean() < 0.3
        assert hdul["REJECTED"].data.sum() > 0 and hdul[0].data.max() == 4

    # FITS products are standard-clean
    if shutil.which("fitsverify"):
        for path in files.values():
            out = subprocess.run(
                ["fitsverify", "-q", str(store.abspath(path))], capture_output=True, text=True
            )
            assert out.stdout.startswith("verification OK"), out.stdout

    # flagging an input invalid makes the co-adds that used it stale (seed 002)
    from surveydm.pipelines.coadd.inputs import stale_tiles

    with registry.session(write=False) as s:
        assert stale_tiles(s) == []
    with registry.session() as s:
        s.get(Product, good["r"][2]).valid = False
    with registry.session(write=False) as s:
        stale = stale_tiles(s, prod_id)
    assert [(t.tile, t.band, t.bad_inputs) for t in stale] == [(name, "r", (good["r"][2],))]

    # a second submission of the same request runs nothing new and duplicates nothing
    _, again = submit_coadd(registry, request, "dr1")
    assert again == root
    drain(registry, again)
    with registry.session(write=False) as s:
        assert len(s.scalars(select(TileImage)).all()) == 2
