"""Tile catalogs as tables and registry rows: one row per source and band, in single mode
(detected and measured in the band) or dual mode (detected in the reference band, measured on
PSF-homogenised images). Fluxes are in co-add units (AB mag = zp - 2.5 log10 flux)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from surveydm.db.spatial import healpix_index
from surveydm.reduction.coadd.catalog import Detections, Photometry


@dataclass(frozen=True)
class BandCatalog:
    """One band's measurements of a set of detections, ready for a table and rows.

    Attributes:
        mode: single or dual; band: measured; detection_band; zp: AB mag for 1 unit;
        diameters: aperture diameters, arcsec.
    """

    mode: str
    band: str
    detection_band: str
    detections: Detections
    photometry: Photometry
    zp: float
    diameters: tuple[float, ...]


def _mag(flux: np.ndarray, zp: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.where(flux > 0, zp - 2.5 * np.log10(flux), np.nan)


def catalog_table(cats: list[BandCatalog], wcs: WCS) -> Table:
    """A FITS-ready table: positions once, then ``<BAND>_FLUX_APER`` (n, k) ... per band."""
    det = cats[0].detections
    ra, dec = wcs.all_pix2world(det.x, det.y, 0)
    t = Table()
    t["NUMBER"] = np.arange(1, len(det) + 1, dtype=np.int32)
    t["X_IMAGE"], t["Y_IMAGE"] = det.x + 1.0, det.y + 1.0  # FITS 1-based
    t["RA"], t["DEC"] = ra, dec
    t["A_IMAGE"], t["B_IMAGE"], t["THETA"] = det.a, det.b, det.theta
    t["KRON_RADIUS"] = det.kron_radius
    for c in cats:
        p, b = c.photometry, c.band.upper()
        t[f"{b}_FLUX_APER"], t[f"{b}_FLUXERR_APER"] = p.flux_aper, p.flux_err_aper
        t[f"{b}_FLUX_AUTO"], t[f"{b}_FLUXERR_AUTO"] = p.flux_auto, p.flux_err_auto
        t[f"{b}_FLUX_PSF"], t[f"{b}_FLUXERR_PSF"] = p.flux_psf, p.flux_err_psf
        t[f"{b}_MAG_AUTO"] = _mag(p.flux_auto, c.zp)
        t[f"{b}_FLAGS"] = p.flags.astype(np.int32)
    t.meta["APERTURE"] = ",".join(f"{d:g}" for d in cats[0].diameters)
    t.meta["MAGZERO"] = cats[0].zp
    return t


def _f(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def source_rows(
    cat: BandCatalog, wcs: WCS, tile_id: int, production_id: int | None
) -> list[dict[str, Any]]:
    """``tile_source`` rows of one band's catalog (NaN -> NULL); ``product_id`` is added by
    the caller."""
    det, p = cat.detections, cat.photometry
    if not len(det):
        return []
    ra, dec = wcs.all_pix2world(det.x, det.y, 0)
    hp = healpix_index(ra, dec)
    mag_auto, mag_psf = _mag(p.flux_auto, cat.zp), _mag(p.flux_psf, cat.zp)
    diam = [float(d) for d in cat.diameters]
    return [
        dict(
            tile_id=tile_id,
            production_id=production_id,
            mode=cat.mode,
            band=cat.band,
            detection_band=cat.detection_band,
            number=i + 1,
            x=float(det.x[i]),
            y=float(det.y[i]),
            ra=float(ra[i]),
            dec=float(dec[i]),
            healpix=int(hp[i]),
            a=float(det.a[i]),
            b=float(det.b[i]),
            theta=float(det.theta[i]),
            kron_radius=float(det.kron_radius[i]),
            aper_diameters=diam,
            flux_aper=[_f(v) for v in p.flux_aper[i]],
            flux_err_aper=[_f(v) for v in p.flux_err_aper[i]],
            flux_auto=_f(p.flux_auto[i]),
            flux_err_auto=_f(p.flux_err_auto[i]),
            flux_psf=_f(p.flux_psf[i]),
            flux_err_psf=_f(p.flux_err_psf[i]),
            mag_auto=_f(mag_auto[i]),
            mag_psf=_f(mag_psf[i]),
            flags=int(p.flags[i]),
        )
        for i in range(len(det))
    ]
