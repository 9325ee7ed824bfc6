"""Small synthetic reduced images for the co-add tests and benchmarks: dithered exposures of
one star field with known magnitudes, per-exposure seeing, zero-point and sky, and optional
cosmic rays and satellite trails injected with their pixels kept as truth (the simulator's
trails are another helper's work; these are injected into the input arrays here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from scipy.special import erf

from surveydm.reduction.coadd.stack import CoaddInput


@dataclass(frozen=True)
class Field:
    """True stars of a field: ra, dec (deg) and AB magnitude."""

    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray


@dataclass(frozen=True)
class Exposure:
    """A synthetic reduced image and its truth: ``artefacts`` is the (ny, nx) flux (e-) of
    the injected cosmic rays and trail."""

    input: CoaddInput
    fwhm_pix: float
    artefacts: np.ndarray


def make_field(ra0: float, dec0: float, half_deg: float, n: int, seed: int = 1) -> Field:
    """``n`` stars uniformly in a box of half side ``half_deg``, magnitudes 16-23 (more faint)."""
    rng = np.random.default_rng(seed)
    ra = ra0 + rng.uniform(-half_deg, half_deg, n) / np.cos(np.radians(dec0))
    dec = dec0 + rng.uniform(-half_deg, half_deg, n)
    mag = 16.0 + 7.0 * rng.power(1.5, n)
    return Field(ra, dec, mag)


def image_wcs(ra: float, dec: float, shape: tuple[int, int], scale: float, rot_deg: float):
    """A TAN WCS centred on (ra, dec), ``scale`` arcsec/pixel, rotated by ``rot_deg``."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    d = scale / 3600.0
    w.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return w


def render(shape, x, y, flux, fwhm_pix) -> np.ndarray:
    """Pixel-integrated circular Gaussians (exact flux) at 0-based (x, y)."""
    img = np.zeros(shape, np.float64)
    sig = fwhm_pix / 2.3548
    half = int(np.ceil(6 * sig)) + 1
    ny, nx = shape
    for xi, yi, fi in zip(x, y, flux, strict=True):
        x0, y0 = int(round(xi)), int(round(yi))
        xs = np.arange(max(x0 - half, 0), min(x0 + half + 1, nx))
        ys = np.arange(max(y0 - half, 0), min(y0 + half + 1, ny))
        if not len(xs) or not len(ys):
            continue
        px = 0.5 * (
            erf((xs + 0.5 - xi) / (np.sqrt(2) * sig)) - erf((xs - 0.5 - xi) / (np.sqrt(2) * sig))
        )
        py = 0.5 * (
            erf((ys + 0.5 - yi) / (np.sqrt(2) * sig)) - erf((ys - 0.5 - yi) / (np.sqrt(2) * sig))
        )
        img[np.ix_(ys, xs)] += fi * np.outer(py, px)
    return img


def make_exposure(
    field: Field,
    ra: float,
    dec: float,
    *,
    shape: tuple[int, int] = (160, 160),
    scale: float = 0.5,
    rot_deg: float = 0.0,
    seeing: float = 1.2,
    zp: float = 25.0,
    exptime: float = 60.0,
    sky: float = 300.0,
    read_noise: float = 5.0,
    n_cosmics: int = 0,
    trail: bool = False,
    seed: int = 0,
    name: str = "",
) -> Exposure:
    """One reduced image (e-, sky included) of ``field`` pointed at (ra, dec)."""
    rng = np.random.default_rng(seed)
    wcs = image_wcs(ra, dec, shape, scale, rot_deg)
    x, y = wcs.all_world2pix(field.ra, field.dec, 0)
    counts = 10 ** (-0.4 * (field.mag - zp)) * exptime
    fwhm = seeing / scale
    model = render(shape, x, y, counts, fwhm) + sky
    img = rng.poisson(model).astype(np.float64) + rng.normal(0, read_noise, shape)
    art = np.zeros(shape, np.float64)
    if n_cosmics:
        cy, cx = rng.integers(2, shape[0] - 2, n_cosmics), rng.integers(2, shape[1] - 2, n_cosmics)
        art[cy, cx] += rng.uniform(2000, 20000, n_cosmics)
        art[cy, np.minimum(cx + 1, shape[1] - 1)] += rng.uniform(0, 3000, n_cosmics)
    if trail:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        dist = np.abs(0.35 * xx - yy + shape[0] * 0.3) / np.hypot(0.35, 1.0)
        profile = 800.0 * np.exp(-0.5 * (dist / 0.8) ** 2)
        art += profile
    img += art
    weight = (1.0 / (np.maximum(model, 0) + read_noise**2)).astype(np.float32)
    inp = CoaddInput(img.astype(np.float32), weight, None, wcs, zp, exptime, name)
    return Exposure(inp, fwhm, art)


def register_reduced(
    registry,
    store,
    exposures,
    band: str,
    release: str,
    *,
    night: str,
    first: int = 0,
    quality: str = "pass",
    valid: bool = True,
):  # noqa: ANN001
    """Register ``exposures`` as reduced CCDs of a nightly production of ``release`` (obs set,
    raw and reduced mosaics, image rows, science/weight/mask products and archive files), as
    ``single_epoch_ccd`` records them. Returns the science product ids."""
    import datetime as dt

    from astropy.io import fits

    from surveydm.db.models.raw import Image, Mosaic, ObsSet
    from surveydm.pipelines.base.recording import record_file
    from surveydm.pipelines.productions import add_product, get_or_create_production

    prod_id = get_or_create_production(registry, "nightly", release, {"test": "coadd"})
    sci_ids = []
    with registry.session() as s:
        obs = ObsSet(
            obs_set=f"obs_{night}_{band}",
            night=dt.date.fromisoformat(night),
            instrument="synthetic",
            n_files=len(exposures),
        )
        s.add(obs)
        s.flush()
        for k, e in enumerate(exposures):
            inp, num = e.input, first + k
            name = f"{night}_{band}_{num:03d}"
            raw = Mosaic(
                obs_set_id=obs.id,
                kind="science",
                filename=f"{name}.fits",
                exptime=inp.exptime,
                filter_tray=band,
            )
            s.add(raw)
            s.flush()
            red = Mosaic(
                obs_set_id=obs.id,
                kind="red_science",
                filename=f"{name}.fits",
                exptime=inp.exptime,
                filter_tray=band,
                parent_id=raw.id,
                production_id=prod_id,
                qc_status="pass",
            )
            s.add(red)
            s.flush()
            hdr = inp.wcs.to_header()
            ny, nx = inp.image.shape
            foot = inp.wcs.calc_footprint(axes=(nx, ny))
            ids = {}
            job_id = 10_000 + num + 1000 * (band != "r")
            mask = np.zeros(inp.image.shape, np.uint16)
            for kind, data in (("sci", inp.image), ("wht", inp.weight), ("msk", mask)):
                path = store.red_path(release, obs.obs_set, f"{name}.CCD01.{kind}.fits")
                st = store.write_product(
                    path, lambda p, d=data, h=hdr: fits.PrimaryHDU(d, h).writeto(p)
                )
                pr = add_product(
                    s,
                    f"reduced_{kind}",
                    data_id={"ccd": 1, "filter": band},
                    production_id=prod_id,
                    job_id=job_id,
                    file_id=record_file(s, st).id,
                    quality=quality,
                )
                pr.valid = valid
                ids[kind] = pr.id
            s.add(
                Image(
                    mosaic_id=red.id,
                    ccd_num=1,
                    filter=band,
                    naxis1=nx,
                    naxis2=ny,
                    ra_min=float(foot[:, 0].min()),
                    ra_max=float(foot[:, 0].max()),
                    dec_min=float(foot[:, 1].min()),
                    dec_max=float(foot[:, 1].max()),
                    zp_nightly=inp.zp,
                    product_id=ids["sci"],
                    psf_fwhm=e.fwhm_pix * 0.5,
                )
            )
            sci_ids.append(ids["sci"])
    return sci_ids
