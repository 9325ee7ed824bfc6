"""Reduced CCD images with known truth for the memba tests: stars rendered with the simulator's
Moffat PSF at the positions of a deep reference catalog, registered as the nightly pipeline
registers its products (obs set, reduced mosaic, image row, science / weight / mask files and
products), so memba runs on them as on a reduced night without the cost of reducing one."""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet
from surveydm.pipelines.productions import get_or_create_production
from surveydm.simulation.render import render_stars

RA0, DEC0, SCALE, SHAPE = 150.0, 2.0, 0.5, (220, 220)  # deg, deg, arcsec/pixel, (ny, nx)
EXPTIME, SKY, READ_NOISE = 100.0, 400.0, 5.0


@dataclass(frozen=True)
class Truth:
    """The synthetic sky: ``ref_id``, ``ra``, ``dec`` and true flux (nJy) per band."""

    ref_id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux: dict[str, np.ndarray]


def make_truth(seed: int = 0, n_side: int = 6) -> Truth:
    """Stars on a jittered grid 30 pixels apart, fluxes log-uniform in 3e4..3e6 nJy."""
    rng = np.random.default_rng(seed)
    g = (np.arange(n_side) - (n_side - 1) / 2) * 30 * SCALE / 3600
    dra, ddec = (v.ravel() for v in np.meshgrid(g, g))
    ra = RA0 + (dra + rng.uniform(-1, 1, dra.size) / 3600) / np.cos(np.radians(DEC0))
    dec = DEC0 + ddec + rng.uniform(-1, 1, dra.size) / 3600
    base = 10 ** rng.uniform(4.5, 6.5, ra.size)
    flux = {"NB455": base, "r": base * 10 ** rng.uniform(-0.2, 0.2, ra.size)}
    return Truth(np.arange(1, ra.size + 1, dtype=np.int64) * 7, ra, dec, flux)


def write_deep_refcat(truth: Truth, path: Path) -> Path:
    """The deep reference catalog of ``truth`` (point sources) in the simulator's format."""
    t = Table()
    t["id"], t["ra"], t["dec"] = truth.ref_id, truth.ra, truth.dec
    for col in ("a", "b", "theta"):
        t[col] = np.zeros(len(t), np.float32)
    t["mag_r"] = (31.4 - 2.5 * np.log10(truth.flux["r"])).astype(np.float32)
    t["point_source"] = np.ones(len(t), bool)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(t, name="DEEPREF")]).writeto(path)
    return path


def _wcs(ra: float, dec: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(SHAPE[1] + 1) / 2, (SHAPE[0] + 1) / 2]
    w.wcs.cd = np.array([[-SCALE, 0.0], [0.0, SCALE]]) / 3600
    w.pixel_shape = (SHAPE[1], SHAPE[0])
    return w


def add_reduced_image(
    settings: Settings,
    registry: Registry,
    truth: Truth,
    *,
    night: dt.date,
    band: str,
    seed: int,
    fwhm_arcsec: float,
    zeropoint: float = 25.0,
) -> int:
    """Render, archive and register one reduced CCD image of ``truth``; returns its image id.

    Pixels: electrons, sky ``SKY`` e- left in (memba's annuli remove it), Gaussian
    Poisson + read noise; weight = 1 / (sky + read noise^2); mask 0; the pointing is offset
    by up to 4 pixels. The image's products belong to the nightly production of
    ``settings.release``; ``zp_nightly`` = ``zeropoint`` (AB mag of 1 e-/s)."""
    rng = np.random.default_rng(seed)
    w = _wcs(RA0 + rng.uniform(-2, 2) / 3600, DEC0 + rng.uniform(-2, 2) / 3600)
    x, y = w.all_world2pix(truth.ra, truth.dec, 0)
    electrons = truth.flux[band] * EXPTIME * 10 ** (0.4 * (zeropoint - 31.4))
    model = np.zeros(SHAPE, np.float32)
    render_stars(model, x, y, electrons, fwhm_arcsec / SCALE, 3.5)
    expected = model + SKY
    sci = (expected + rng.standard_normal(SHAPE) * np.sqrt(expected + READ_NOISE**2)).astype(
        np.float32
    )
    arrays = {
        "reduced_sci": sci,
        "reduced_wht": np.full(SHAPE, 1 / (SKY + READ_NOISE**2), np.float32),
        "reduced_msk": np.zeros(SHAPE, np.uint16),
    }
    name = f"{night:%Y%m%d}_{seed:03d}"
    pid = get_or_create_production(registry, "nightly", settings.release, {"refcat": "test"})
    header = w.to_header()
    with registry.session() as s:
        obs = ObsSet(obs_set=name, night=night, instrument="synthetic", manifest={}, n_files=1)
        s.add(obs)
        s.flush()
        mosaic = Mosaic(obs_set_id=obs.id, kind="red_science", filename=f"syn.{name}.fits",
                        exptime=EXPTIME, airmass=1.1, production_id=pid,
                        mjd_obs=61000.0 + (night - dt.date(2025, 2, 24)).days)  # fmt: skip
        s.add(mosaic)
        s.flush()
        products = {}
        for kind, data in arrays.items():
            rel = f"red/{settings.release}/{name}/syn.{name}.{kind}.fits"
            path = Path(settings.archive_root) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(data, header=header).writeto(path)
            raw = path.read_bytes()
            f = ArchiveFile(path=rel, size=len(raw), adler32=f"{zlib.adler32(raw):08x}")
            s.add(f)
            s.flush()
            products[kind] = Product(
                product_type=kind, data_id={"image": name}, production_id=pid,
                job_id=900_000 + seed, file_id=f.id,
            )  # fmt: skip
            s.add(products[kind])
        s.flush()
        foot = w.calc_footprint()
        image = Image(mosaic_id=mosaic.id, ccd_num=1, filter=band, naxis1=SHAPE[1],
                      naxis2=SHAPE[0], ra_min=float(foot[:, 0].min()),
                      ra_max=float(foot[:, 0].max()), dec_min=float(foot[:, 1].min()),
                      dec_max=float(foot[:, 1].max()), psf_fwhm=fwhm_arcsec,
                      zp_nightly=zeropoint, product_id=products["reduced_sci"].id)  # fmt: skip
        s.add(image)
        s.flush()
        return image.id


def memba_fixture(settings: Settings, registry: Registry, tmp_path: Path) -> Truth:
    """Two NB455 images and one r image of the synthetic sky, measured by memba (inline)."""
    from surveydm.pipelines.memba import run_memba
    from surveydm.pipelines.memba.refcat import load_deep_refcat

    truth = make_truth(seed=5, n_side=4)
    load_deep_refcat(registry, write_deep_refcat(truth, tmp_path / "deep.fits"), "deep")
    for k, band in enumerate(["NB455", "NB455", "r"]):
        add_reduced_image(settings, registry, truth, night=dt.date(2026, 11, 20 + k), band=band,
                          seed=60 + k, fwhm_arcsec=1.0)  # fmt: skip
    run_memba(settings, refcat="deep", processes=0)
    return truth
