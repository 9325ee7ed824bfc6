"""Photometric zero-point of one reduced CCD against a reference catalog (seed 000 section 6.1,
``image_zp``, recorded as ``image.zp_nightly``; the aperture-corrected calibration of
docs/reduction-catalogs.md).

The zero-point is fitted on the astrometric matches: unflagged point sources against reference
magnitudes in a window, with aperture fluxes times an aperture correction measured on the
CCD's own isolated PSF stars (total fluxes that do not depend on the PSF model), or the PSF-fit
fluxes without one. The calibrated magnitudes of the catalog then use the best total flux of
each source (:func:`best_flux`). Pure functions on arrays and astropy tables.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from surveydm.reduction.extraction import Background
from surveydm.reduction.masks import MaskBit
from surveydm.reduction.photometry import (
    PhotometryError,
    ZeroPoint,
    aperture_correction,
    fit_zeropoint,
)
from surveydm.reduction.psf import select_psf_stars

#: Mask bits that keep a matched star out of the zero-point fit.
ZP_REJECT_BITS = int(MaskBit.SATURATED | MaskBit.BLEED | MaskBit.COSMIC_RAY | MaskBit.BAD_PIXEL)
#: Error assumed for reference magnitudes without one, mag.
DEFAULT_REFERENCE_ERROR = 0.02
#: 2.5 / ln(10): magnitude error of a relative flux error.
MAG_PER_RELATIVE_FLUX = 1.0857


def best_flux(catalog: Table) -> tuple[np.ndarray, np.ndarray]:
    """Total flux and error per source (e-): the PSF-fit flux where it converged (point
    sources), else the Kron (auto) flux.

    Args:
        catalog: detections with ``flux_auto, flux_err_auto`` and optionally
            ``flux_psf, flux_err_psf`` (e-).

    Returns:
        (n,) flux and (n,) error arrays, float64, e-.
    """
    auto = np.asarray(catalog["flux_auto"], float)
    auto_err = np.asarray(catalog["flux_err_auto"], float)
    if "flux_psf" not in catalog.colnames:
        return auto, auto_err
    psf = np.asarray(catalog["flux_psf"], float)
    psf_err = np.asarray(catalog["flux_err_psf"], float)
    use = np.isfinite(psf) & np.isfinite(psf_err)
    return np.where(use, psf, auto), np.where(use, psf_err, auto_err)


def isolated_star_aperture_correction(
    science: np.ndarray, background: Background, mask: np.ndarray, catalog: Table, fwhm: float
) -> float | None:
    """Aperture correction factor of ``flux_aper`` (total / aperture flux) from the curve of
    growth of the PSF stars.

    The stars are those of :func:`surveydm.reduction.psf.select_psf_stars` without a neighbour
    within the total radius + 2 pixels; the total radius is 4 FWHM, or the aperture radius +
    2 pixels when the seeing is so good that the aperture already holds 4 FWHM. The fit is
    :func:`surveydm.reduction.photometry.aperture_correction` (inverse-variance weighted, so the
    brightest stars dominate).

    Args:
        science: (ny, nx) float32 image, e-; background: its sep background (e-);
        mask: (ny, nx) mask bits; catalog: detections with ``x, y`` (pixels) and
            ``meta["aperture_radius_pix"]``; fwhm: PSF FWHM, pixels.

    Returns:
        The factor (> 0), or None without three usable stars or a finite FWHM.
    """
    r_ap = float(catalog.meta.get("aperture_radius_pix", 0.0)) if len(catalog) else 0.0
    if not (np.isfinite(fwhm) and r_ap > 0):
        return None
    total = max(4.0 * fwhm, r_ap + 2.0)
    stars = np.flatnonzero(select_psf_stars(catalog))
    if len(stars) < 3:
        return None
    xy = np.column_stack([np.asarray(catalog["x"], float), np.asarray(catalog["y"], float)])
    nn, _ = cKDTree(xy).query(xy[stars], k=2)
    stars = stars[nn[:, 1] > total + 2.0]
    if len(stars) < 3:
        return None
    try:
        ac = aperture_correction(
            science,
            xy[stars, 0],
            xy[stars, 1],
            radius=r_ap,
            total_radius=total,
            background=background.image,
            mask=mask,
            err=background.rms,
            gain=1.0,
        )
    except PhotometryError:
        return None
    return ac.factor if ac.n_stars >= 3 and np.isfinite(ac.factor) else None


def matched_zeropoint(
    matches: Table,
    catalog: Table,
    reference: Table,
    *,
    exptime: float,
    mag_range: tuple[float, float],
    apcor: float | None = None,
) -> ZeroPoint | None:
    """Zero-point (AB mag for 1 e-/s) of a CCD from its astrometric matches.

    Args:
        matches: ``source_index, reference_index`` pairs
            (:attr:`surveydm.reduction.astrometry.AstrometrySolution.matches`).
        catalog: detections with ``flux_aper, flux_err_aper`` (or the columns of
            :func:`best_flux`) in e- and ``mask_flags``.
        reference: reference stars with ``mag, mag_error`` (AB, this band; a missing error
            counts as :data:`DEFAULT_REFERENCE_ERROR`).
        exptime: s; mag_range: (bright, faint) reference magnitudes used.
        apcor: aperture correction factor of ``flux_aper``; None uses the PSF-fit fluxes.

    Returns:
        The fit of :func:`surveydm.reduction.photometry.fit_zeropoint`, or None without
        matches. Stars with :data:`ZP_REJECT_BITS` or a non-positive flux are left out.
    """
    if not len(matches):
        return None
    si = np.asarray(matches["source_index"], int)
    ri = np.asarray(matches["reference_index"], int)
    if apcor is not None:
        flux = np.asarray(catalog["flux_aper"], float) * apcor
        ferr = np.asarray(catalog["flux_err_aper"], float) * apcor
    else:
        flux, ferr = best_flux(catalog)
    flux, ferr = flux[si], ferr[si]
    ok = (np.asarray(catalog["mask_flags"])[si] & ZP_REJECT_BITS) == 0
    ok &= np.isfinite(flux) & (flux > 0)
    ref_err = np.asarray(reference["mag_error"], float)[ri]
    return fit_zeropoint(
        flux[ok],
        np.asarray(reference["mag"], float)[ri][ok],
        np.where(np.isfinite(ref_err), ref_err, DEFAULT_REFERENCE_ERROR)[ok],
        exptime=exptime,
        instrumental_err=ferr[ok],
        mag_range=mag_range,
    )


def add_calibrated_magnitudes(catalog: Table, zp: float, exptime: float) -> None:
    """Add ``mag, mag_err`` (AB) to ``catalog`` in place from :func:`best_flux` and the
    zero-point ``zp`` (AB mag for 1 e-/s); NaN where the flux is not positive.

    ``mag = zp - 2.5 log10(flux / exptime)``, ``mag_err = 1.0857 flux_err / flux``.
    """
    flux, ferr = best_flux(catalog)
    with np.errstate(divide="ignore", invalid="ignore"):
        catalog["mag"] = np.where(flux > 0, zp - 2.5 * np.log10(flux / exptime), np.nan)
        catalog["mag_err"] = np.where(flux > 0, MAG_PER_RELATIVE_FLUX * ferr / flux, np.nan)
