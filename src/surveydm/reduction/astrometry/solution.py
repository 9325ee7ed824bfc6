"""The result of :func:`~surveydm.reduction.astrometry.solve_astrometry` and its errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from astropy.table import Table
from astropy.wcs import WCS

from surveydm.errors import SurveydmError

__all__ = [
    "STATUS_NO_MATCH",
    "STATUS_OK",
    "STATUS_TOO_FEW_STARS",
    "AstrometryError",
    "AstrometrySolution",
]

STATUS_OK = "ok"
STATUS_TOO_FEW_STARS = "too_few_stars"
STATUS_NO_MATCH = "no_match"


class AstrometryError(SurveydmError):
    """Inputs to the astrometric solver are malformed (missing columns, non-celestial WCS)."""


@dataclass
class AstrometrySolution:
    """Result of :func:`solve_astrometry`.

    Attributes:
        wcs: fitted TAN-SIP WCS (status ``ok``) or a copy of the initial WCS.
        status: ``"ok"``, ``"too_few_stars"`` or ``"no_match"``.
        n_matches: matched source/reference pairs used in the final fit (after clipping).
        rms_arcsec: 2-D RMS sqrt(<dRA*^2 + dDec^2>) of the fit residuals of bright unsaturated
            stars (flags == 0, flux above the median of the used matches), arcsec.
        rms_ra_arcsec, rms_dec_arcsec: per-axis RMS of the same stars (RA includes cos Dec).
        n_bright: stars in the RMS.
        matches: one row per matched pair: ``source_index, reference_index, x, y, ra, dec``
            (reference at epoch), ``dra_arcsec, ddec_arcsec`` (fit - reference), ``used``.
        rotation_deg: rotation (deg) of the sources relative to the guess, about the CCD
            centre (refined affine match; the coarse value if matching failed).
        offset_arcsec: (dx, dy) shift of the CCD centre relative to the guess, in the guess's
            pixel axes converted to arcsec.
        message: human-readable summary (why it failed, if it did).
    """

    wcs: WCS
    status: str
    n_matches: int = 0
    rms_arcsec: float = float("nan")
    rms_ra_arcsec: float = float("nan")
    rms_dec_arcsec: float = float("nan")
    n_bright: int = 0
    matches: Table = field(default_factory=Table)
    rotation_deg: float = float("nan")
    offset_arcsec: tuple[float, float] = (float("nan"), float("nan"))
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the fit succeeded (``status == "ok"``)."""
        return self.status == STATUS_OK

    @property
    def rms_ra(self) -> float:
        """Alias of ``rms_ra_arcsec`` (arcsec)."""
        return self.rms_ra_arcsec

    @property
    def rms_dec(self) -> float:
        """Alias of ``rms_dec_arcsec`` (arcsec)."""
        return self.rms_dec_arcsec
