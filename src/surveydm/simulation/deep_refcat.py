"""The deep reference catalog of forced photometry, as PAUS uses COSMOS or CFHTLenS (seed 000
section 6.1 item 3): every simulated object to r ~ 23, with its position, shape and r
magnitude measured with realistic errors, and ids equal to the truth object ids.

Columns (FITS binary table, extension ``DEEPREF``): ``id`` (truth object id), ``ra``, ``dec``
(deg, ICRS, at the truth epoch), ``a``, ``b`` (arcsec, semi-axes of the half-light ellipse:
a = r50 / sqrt(q), b = r50 * sqrt(q), so sqrt(a b) is the circularised half-light radius; 0
for point sources), ``theta`` (deg, position angle of the major axis east of north),
``mag_r``, ``magerr_r`` (AB), ``point_source`` (bool, a deep survey's star/galaxy flag).

Errors: positions 10 mas + 30 mas x 10^(0.4 (r - 23)); magnitudes from a survey with S/N = 10
at r = 26 (COSMOS-like depth) and a 3 mmag floor; shapes 5 % in r50, 0.03 in q.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from surveydm.simulation.config import SimulationConfig

#: File name of the deep reference catalog in the truth directory.
DEEP_REFCAT_FILE = "deep_refcat.fits"
#: r magnitude at which the deep survey reaches S/N = 10.
DEPTH_R_SN10 = 26.0


def deep_refcat_table(objects: Table, config: SimulationConfig, mag_limit: float = 23.0) -> Table:
    """The deep reference catalog of the truth ``objects`` (``objects.parquet``) brighter than
    ``mag_limit`` in r (the first ``mag_*`` column when there is no r), deterministic for
    ``config.sky_seed``. Format: module docstring."""
    rng = np.random.default_rng([config.sky_seed, 3])
    band = "mag_r" if "mag_r" in objects.colnames else next(c for c in objects.colnames
                                                            if c.startswith("mag_"))  # fmt: skip
    r = np.asarray(objects[band], float)
    sel = np.nonzero(r < mag_limit)[0]
    r = r[sel]
    star = np.asarray(objects["kind"])[sel] == "star"
    dec0 = np.asarray(objects["dec"], float)[sel]
    ra0 = np.asarray(objects["ra"], float)[sel]
    pos_err = (10.0 + 30.0 * 10 ** (0.4 * (r - 23.0))) / 3.6e6  # deg
    cosd = np.cos(np.radians(dec0))
    hlr = np.nan_to_num(np.asarray(objects["half_light_radius_arcsec"], float)[sel])
    q = np.nan_to_num(np.asarray(objects["axis_ratio"], float)[sel], nan=1.0)
    hlr = np.where(star, 0.0, hlr * (1 + rng.normal(0, 0.05, len(sel))))
    q = np.where(star, 1.0, np.clip(q + rng.normal(0, 0.03, len(sel)), 0.1, 1.0))
    pa = np.nan_to_num(np.asarray(objects["position_angle_deg"], float)[sel])
    magerr = np.hypot(0.003, 1.0857 / (10 * 10 ** (-0.4 * (r - DEPTH_R_SN10))))
    t = Table()
    t["id"] = np.asarray(objects["id"], np.int64)[sel]
    t["ra"] = (ra0 + rng.normal(0, pos_err) / cosd) % 360.0
    t["dec"] = dec0 + rng.normal(0, pos_err)
    t["a"] = (hlr / np.sqrt(q)).astype(np.float32)
    t["b"] = (hlr * np.sqrt(q)).astype(np.float32)
    t["theta"] = np.where(star, 0.0, pa).astype(np.float32)
    t["mag_r"] = (r + rng.normal(0, magerr)).astype(np.float32)
    t["magerr_r"] = magerr.astype(np.float32)
    t["point_source"] = star
    for col, unit in [("ra", "deg"), ("dec", "deg"), ("a", "arcsec"), ("b", "arcsec"),
                      ("theta", "deg"), ("mag_r", "mag"), ("magerr_r", "mag")]:  # fmt: skip
        t[col].unit = unit
    t.meta["MAGLIM"] = mag_limit
    t.meta["EPOCH"] = float(objects.meta.get("epoch", 2026.9))
    t.meta["ORIGIN"] = "surveydm pixelsim (deep, COSMOS-like, simulated)"
    return t


def write_deep_refcat(
    objects: Table, path: Path, config: SimulationConfig, mag_limit: float = 23.0
) -> Path:
    """Write :func:`deep_refcat_table` to ``path`` (FITS, extension ``DEEPREF``); returns it."""
    hdu = fits.BinTableHDU(deep_refcat_table(objects, config, mag_limit), name="DEEPREF")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return Path(path)
