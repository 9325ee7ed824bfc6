"""Astrometric calibration of one CCD, as its documented steps."""

from __future__ import annotations

import copy
import math

from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from surveydm.reduction.astrometry.catalogs import (
    observation_epoch,
    read_reference,
    read_sources,
)
from surveydm.reduction.astrometry.config import AstrometryConfig
from surveydm.reduction.astrometry.matching import coarse_match, refine_match
from surveydm.reduction.astrometry.projection import project_reference, search_frame
from surveydm.reduction.astrometry.solution import (
    STATUS_NO_MATCH,
    STATUS_OK,
    STATUS_TOO_FEW_STARS,
    AstrometryError,
    AstrometrySolution,
)
from surveydm.reduction.astrometry.wcs_fit import assess_fit, fit_wcs_clipped, matches_table

__all__ = ["solve_astrometry"]

_DEFAULT_CONFIG = AstrometryConfig()


def solve_astrometry(
    sources: Table,
    reference: Table,
    initial_wcs: WCS,
    *,
    epoch: Time | float | str | None = None,
    image_shape: tuple[int, int] | None = None,
    config: AstrometryConfig = _DEFAULT_CONFIG,
) -> AstrometrySolution:
    """Calibrate the WCS of one CCD against a reference catalog, from the header guess.

    The steps (see the package docstring): project the reference stars with the guess, coarse
    rotation/offset vote, iterative affine refinement, TAN-SIP fit with sigma clipping and
    re-matching on the sky, assessment against chance matches.

    Args:
        sources: detections with ``x, y`` (0-based pixels), a flux (``flux``/``flux_auto``/
            ``flux_aper`` or ``config.flux_column``) and optionally ``flags`` (non-zero rows
            are not used for the fit).
        reference: reference stars with ``ra, dec`` (deg), a magnitude (``config.mag_column``,
            brighter first in the coarse search), optional ``pmra, pmdec`` (mas/yr) and the
            catalog epoch (see :func:`apply_proper_motion`).
        initial_wcs: celestial WCS guess from the header (pointing and rotation errors).
        epoch: observation epoch for proper motions (default: the WCS ``MJD-OBS`` /
            ``DATE-OBS`` if set).
        image_shape: (ny, nx) of the CCD (default: ``initial_wcs.pixel_shape`` or the extent
            of the sources).
        config: the search, matching and fit knobs (:class:`AstrometryConfig`).

    Returns:
        :class:`AstrometrySolution` (never raises for data that simply does not solve:
        status ``too_few_stars`` or ``no_match`` with a copy of the initial WCS).

    Raises:
        AstrometryError: missing columns or a non-celestial initial WCS.
    """
    if not initial_wcs.has_celestial:
        raise AstrometryError("initial_wcs must be a celestial WCS")
    src = read_sources(sources, config.flux_column)
    epoch = observation_epoch(epoch, initial_wcs)
    ref = read_reference(reference, epoch, config.mag_column)
    fallback = copy.deepcopy(initial_wcs)

    def failed(status: str, message: str, **kw) -> AstrometrySolution:
        return AstrometrySolution(wcs=fallback, status=status, message=message, **kw)

    frame = search_frame(initial_wcs, image_shape, src, config)
    proj = project_reference(ref, initial_wcs, frame)
    n_src, n_ref, need = len(src.usable), len(proj.in_area), config.min_matches
    if n_src < need or n_ref < need:
        return failed(
            STATUS_TOO_FEW_STARS,
            f"{n_src} usable sources and {n_ref} reference stars in the field; "
            f"at least {need} of each needed",
        )
    coarse = coarse_match(src, proj, frame, config)
    if not coarse.significant:
        return failed(
            STATUS_NO_MATCH,
            f"no significant offset/rotation peak: {coarse.peak} votes, "
            f"{coarse.threshold:.1f} needed (noise {coarse.noise:.1f})",
        )
    match = refine_match(src, proj, coarse, frame, config)
    if len(match.source) < need:
        off = coarse.offset_px
        return failed(
            STATUS_NO_MATCH,
            f"only {len(match.source)} matches after refinement ({need} needed)",
            rotation_deg=coarse.rotation_deg,
            offset_arcsec=(float(off[0] * frame.scale), float(off[1] * frame.scale)),
        )
    fit = fit_wcs_clipped(src, ref, proj, match, frame, config)
    verdict = assess_fit(fit, src, ref, proj, frame, config)
    if verdict.status != STATUS_OK:
        return failed(verdict.status, verdict.message)
    rms_ra, rms_dec = verdict.rms_ra_arcsec, verdict.rms_dec_arcsec
    fine_off = match.offset_px(frame.center)
    return AstrometrySolution(
        wcs=fit.wcs,
        status=STATUS_OK,
        n_matches=verdict.n_used,
        rms_arcsec=float(math.hypot(rms_ra, rms_dec)),
        rms_ra_arcsec=rms_ra,
        rms_dec_arcsec=rms_dec,
        n_bright=int(verdict.bright.sum()),
        matches=matches_table(fit, src, ref, verdict),
        rotation_deg=match.rotation_deg(),
        offset_arcsec=(float(fine_off[0] * frame.scale), float(fine_off[1] * frame.scale)),
        message=verdict.message,
    )
