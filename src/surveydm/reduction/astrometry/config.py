"""The knobs of :func:`~surveydm.reduction.astrometry.solve_astrometry`, in one frozen
dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from surveydm.reduction.astrometry.solution import AstrometryError

__all__ = ["AstrometryConfig"]


@dataclass(frozen=True)
class AstrometryConfig:
    """How :func:`~surveydm.reduction.astrometry.solve_astrometry` searches, matches and fits.

    Attributes:
        max_offset_arcsec: largest pointing error searched, arcsec (default 90).
        max_rotation_deg: largest rotation error searched, deg (default 1.5).
        sip_degree: SIP polynomial degree (lowered automatically when matches are few; None
            or < 2 fits a linear TAN WCS), default 3.
        match_radius_arcsec: final one-to-one match radius on the sky, arcsec (default 1).
        min_matches: fewer usable stars or matches than this gives ``too_few_stars`` /
            ``no_match`` (default 6).
        max_sources: brightest sources used in the coarse vote (default 150).
        clip_sigma: residual clipping threshold in Rayleigh sigmas of the 2-D residuals
            (default 3.5).
        flux_column: the sources' flux column to rank them by (default: the first of
            ``flux``, ``flux_auto``, ``flux_aper``).
        mag_column: the reference magnitude column to rank reference stars by (e.g.
            ``mag_r``; without a ``mag`` column all stars rank equally). Default "mag".
        fitter: "linear" (:func:`fit_tan_sip`, exact linear least squares with CRPIX at the
            CCD centre, default) or "astropy" (``fit_wcs_from_points``, same model, ~100x
            slower, no inverse SIP terms).

    Raises:
        AstrometryError: a value out of its range (the message names the field).
    """

    max_offset_arcsec: float = 90.0
    max_rotation_deg: float = 1.5
    sip_degree: int | None = 3
    match_radius_arcsec: float = 1.0
    min_matches: int = 6
    max_sources: int = 150
    clip_sigma: float = 3.5
    flux_column: str | None = None
    mag_column: str = "mag"
    fitter: str = "linear"

    def __post_init__(self) -> None:
        if self.fitter not in ("linear", "astropy"):
            raise AstrometryError(f"fitter must be 'linear' or 'astropy', got {self.fitter!r}")
        if not (self.max_offset_arcsec >= 0 and self.max_rotation_deg >= 0):
            raise AstrometryError(
                "max_offset_arcsec and max_rotation_deg must be >= 0 "
                f"(got {self.max_offset_arcsec}, {self.max_rotation_deg})"
            )
        if not (self.match_radius_arcsec > 0 and self.clip_sigma > 0):
            raise AstrometryError(
                "match_radius_arcsec and clip_sigma must be positive "
                f"(got {self.match_radius_arcsec}, {self.clip_sigma})"
            )
        if self.min_matches < 1 or self.max_sources < 1:
            raise AstrometryError(
                f"min_matches and max_sources must be >= 1 (got {self.min_matches}, "
                f"{self.max_sources})"
            )
