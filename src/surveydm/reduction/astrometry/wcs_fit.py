"""Steps 4 and 5 of the astrometric solution: the TAN-SIP fit with sigma clipping of the 2-D
residuals and re-matching on the sky, and the assessment of the fit (significance against
chance matches, RMS of the bright stars)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points
from scipy.spatial import cKDTree
from scipy.stats import poisson

from surveydm.reduction.astrometry.catalogs import ReferenceStars, Sources
from surveydm.reduction.astrometry.matching import RefinedMatch, unique_nearest
from surveydm.reduction.astrometry.projection import ProjectedReference, SearchFrame
from surveydm.reduction.astrometry.solution import STATUS_NO_MATCH, STATUS_OK
from surveydm.reduction.astrometry.tan_sip import (
    fit_tan_sip,
    residuals_arcsec,
    sip_degree_for,
    tangent_offsets,
)

__all__ = ["Assessment", "WcsFit", "assess_fit", "fit_wcs_clipped"]


@dataclass(frozen=True)
class WcsFit:
    """The fitted WCS and the matches it was fitted to.

    Attributes:
        wcs: fitted TAN(-SIP) WCS with the CCD's ``pixel_shape``.
        source, reference: (k,) int64 matched source / reference-star indices (rows of the
            input tables).
        used: (k,) bool, the pairs kept by the clipping.
        clip_arcsec: last clipping radius, arcsec.
    """

    wcs: WCS
    source: np.ndarray
    reference: np.ndarray
    used: np.ndarray
    clip_arcsec: float


def _fit_once(fitter: str, x, y, ra, dec, degree: int | None, frame: SearchFrame) -> WCS:
    """One TAN-SIP fit of pixel (x, y) to sky (ra, dec) with CRPIX at the CCD centre."""
    if fitter == "astropy":
        world = SkyCoord(ra, dec, unit="deg")
        return fit_wcs_from_points(
            (x, y), world, proj_point="center", projection="TAN", sip_degree=degree
        )
    nx, ny = frame.nx, frame.ny
    return fit_tan_sip(
        x, y, ra, dec, crpix=((nx + 1) / 2.0, (ny + 1) / 2.0), sip_degree=degree,
        image_shape=(ny, nx),
    )  # fmt: skip


def fit_wcs_clipped(
    src: Sources,
    ref: ReferenceStars,
    proj: ProjectedReference,
    match: RefinedMatch,
    frame: SearchFrame,
    config,
) -> WcsFit:
    """Fit the WCS to the refined matches, clipping 2-D residuals beyond ``clip_sigma``
    Rayleigh sigmas (at least 0.02 arcsec; at most 5 clipping rounds), then re-match every
    usable source on the sky with the fit (radius between ``match_radius`` and 3 times it)
    and fit again; at most 4 fits of new matches (``config``: an ``AstrometryConfig``)."""
    x, y, ra_ref, dec_ref = src.x, src.y, ref.ra, ref.dec
    src_idx, ref_idx = src.usable, proj.in_area
    s_i, r_i = src_idx[match.source], ref_idx[match.reference]
    used = np.ones(len(s_i), dtype=bool)
    ra0, dec0 = float(np.median(ra_ref[r_i])), float(np.median(dec_ref[r_i]))
    sky_tree = cKDTree(
        np.column_stack(tangent_offsets(ra_ref[ref_idx], dec_ref[ref_idx], ra0, dec0))
    )
    for it in range(4):
        for _clip in range(5):
            deg = sip_degree_for(int(used.sum()), config.sip_degree)
            wcs = _fit_once(
                config.fitter, x[s_i[used]], y[s_i[used]], ra_ref[r_i[used]], dec_ref[r_i[used]],
                deg, frame,
            )  # fmt: skip
            dra, ddec = residuals_arcsec(wcs, x[s_i], y[s_i], ra_ref[r_i], dec_ref[r_i])
            r = np.hypot(dra, ddec)
            sigma = float(np.median(r[used])) / math.sqrt(2.0 * math.log(2.0))
            limit = max(config.clip_sigma * sigma, 0.02)
            new_used = r <= limit
            if new_used.sum() < config.min_matches:
                new_used = used
            if np.array_equal(new_used, used):
                break
            used = new_used
        if it == 3:
            break
        # Re-match all usable sources on the sky with the fitted WCS.
        pra, pdec = wcs.all_pix2world(x[src_idx], y[src_idx], 0)
        pts = np.column_stack(tangent_offsets(pra, pdec, ra0, dec0))
        radius = config.match_radius_arcsec
        radius_as = max(radius, min(3.0 * limit, 3.0 * radius))
        q2, t2, _d = unique_nearest(sky_tree, pts, radius_as)
        if len(q2) < config.min_matches:
            break
        s_new, r_new = src_idx[q2], ref_idx[t2]
        if np.array_equal(s_new, s_i) and np.array_equal(r_new, r_i):
            break
        s_i, r_i = s_new, r_new
        used = np.ones(len(s_i), dtype=bool)
    if frame.nx and frame.ny:
        wcs.pixel_shape = (frame.nx, frame.ny)
    return WcsFit(wcs=wcs, source=s_i, reference=r_i, used=used, clip_arcsec=limit)


@dataclass(frozen=True)
class Assessment:
    """Whether a WCS fit is a solution, and its figures.

    Attributes:
        status: ``"ok"`` or ``"no_match"``.
        message: why it is not a solution, or the summary of the solution.
        n_used: pairs kept by the clipping.
        dra, ddec: (k,) residuals (fit - reference) of every matched pair, arcsec (RA with
            cos Dec).
        bright: (k,) bool, used pairs of flux at or above their median (the RMS stars).
    """

    status: str
    message: str
    n_used: int
    dra: np.ndarray
    ddec: np.ndarray
    bright: np.ndarray

    @property
    def rms_ra_arcsec(self) -> float:
        """sqrt(mean(dRA*^2)) of the bright stars, arcsec."""
        return float(np.sqrt(np.mean(self.dra[self.bright] ** 2)))

    @property
    def rms_dec_arcsec(self) -> float:
        """sqrt(mean(dDec^2)) of the bright stars, arcsec."""
        return float(np.sqrt(np.mean(self.ddec[self.bright] ** 2)))


def assess_fit(
    fit: WcsFit, src: Sources, ref: ReferenceStars, proj: ProjectedReference, frame, config
) -> Assessment:
    """Reject fits with fewer than ``min_matches`` used pairs, or not more than expected by
    chance (usable sources x reference density x match area, Poisson false-alarm 1e-4)."""
    s_i, r_i, used = fit.source, fit.reference, fit.used
    dra, ddec = residuals_arcsec(fit.wcs, src.x[s_i], src.y[s_i], ref.ra[r_i], ref.dec[r_i])
    n_used = int(used.sum())
    bright = np.zeros(len(s_i), dtype=bool)
    if n_used < config.min_matches:
        msg = f"only {n_used} matches survive clipping"
        return Assessment(STATUS_NO_MATCH, msg, n_used, dra, ddec, bright)
    nx, ny, pad, scale = frame.nx, frame.ny, frame.pad, frame.scale
    area = float((nx + 2 * pad) * (ny + 2 * pad)) * scale**2
    radius = max(fit.clip_arcsec, config.match_radius_arcsec)
    chance = len(src.usable) * len(proj.in_area) / area * math.pi * radius**2
    if n_used < float(poisson.isf(1e-4, max(chance, 1e-3))) + 1:
        msg = f"{n_used} matches are not above the {chance:.1f} expected by chance"
        return Assessment(STATUS_NO_MATCH, msg, n_used, dra, ddec, bright)
    bright = used & (src.flux[s_i] >= np.median(src.flux[s_i[used]]))
    msg = f"{n_used} matches, SIP degree {sip_degree_for(n_used, config.sip_degree)}"
    return Assessment(STATUS_OK, msg, n_used, dra, ddec, bright)


def matches_table(fit: WcsFit, src: Sources, ref: ReferenceStars, a: Assessment) -> Table:
    """One row per matched pair: ``source_index, reference_index, x, y, ra, dec`` (reference
    at epoch, deg), ``dra_arcsec, ddec_arcsec`` (fit - reference), ``used``."""
    s_i, r_i = fit.source, fit.reference
    matches = Table()
    matches["source_index"] = s_i
    matches["reference_index"] = r_i
    matches["x"] = src.x[s_i]
    matches["y"] = src.y[s_i]
    matches["ra"] = ref.ra[r_i]
    matches["dec"] = ref.dec[r_i]
    matches["dra_arcsec"] = a.dra
    matches["ddec_arcsec"] = a.ddec
    matches["used"] = fit.used
    return matches
