"""QC limits of the nightly pipeline, by name, and the checks each task records.

Every limit is a :class:`~surveydm.orchestration.qc.QCLimit` field of :class:`NightlyLimits`
(``QC_LIMITS.psf_fwhm.max``, never a position in a tuple nor a number inline). The functions
here are pure: figures in, :class:`~surveydm.pipelines.base.recording.Check` values out; the
tasks record them through :func:`~surveydm.pipelines.base.recording.publish`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from surveydm.orchestration.qc import QCLimit
from surveydm.pipelines.base.recording import Check
from surveydm.reduction.single_epoch import PHOTO_OK, CCDMetrics


@dataclass(frozen=True)
class NightlyLimits:
    """The nightly pipeline's QC limits (see docs/nightly.md, "QC checks").

    CCD and exposure: ``psf_fwhm`` (arcsec), ``astro_rms`` (arcsec), ``astro_nstars``,
    ``transparency`` (CCD: measured / nominal flux; ``mosaic_transparency`` for the median
    over CCDs, with no upper limit), ``zp_err`` (mag), ``zp_measured`` (1 when measured),
    ``ccds_reduced`` (fraction), ``fringe_corrected`` (1 when corrected). Master calibrations:
    ``bias_level``, ``bias_noise``, ``bias_structure`` (e-), ``flat_residual_rms``,
    ``flat_stability_rms`` (fractions), ``fringe_frames`` (exposures). Bad-pixel mask:
    ``bad_pixel_fraction`` (fraction of a CCD's pixels), ``bad_pixel_darks`` (darks used).
    """

    psf_fwhm: QCLimit = QCLimit(max=2.5, warn_max=1.6)
    astro_rms: QCLimit = QCLimit(max=0.15, warn_max=0.06)
    astro_nstars: QCLimit = QCLimit(min=10, warn_min=30)
    transparency: QCLimit = QCLimit(min=0.5, max=1.2, warn_min=0.8)
    mosaic_transparency: QCLimit = QCLimit(min=0.5, warn_min=0.8)
    zp_err: QCLimit = QCLimit(max=0.05, warn_max=0.02)
    zp_measured: QCLimit = QCLimit(min=1.0)
    ccds_reduced: QCLimit = QCLimit(min=0.5, warn_min=0.99)
    fringe_corrected: QCLimit = QCLimit(warn_min=1.0)
    fringe_frames: QCLimit = QCLimit(warn_min=2)
    bias_level: QCLimit = QCLimit(max=50.0, warn_max=10.0)
    bias_noise: QCLimit = QCLimit(max=20.0, warn_max=10.0)
    bias_structure: QCLimit = QCLimit(max=10.0, warn_max=3.0)
    flat_residual_rms: QCLimit = QCLimit(max=0.05, warn_max=0.02)
    flat_stability_rms: QCLimit = QCLimit(max=0.02, warn_max=0.01)
    bad_pixel_fraction: QCLimit = QCLimit(max=0.1, warn_max=0.01)
    bad_pixel_darks: QCLimit = QCLimit(warn_min=1)


#: The limits in force.
QC_LIMITS = NightlyLimits()


def ccd_checks(m: CCDMetrics, limits: NightlyLimits = QC_LIMITS) -> list[Check]:
    """Checks of one reduced CCD: PSF, astrometry, and the zero-point (or its absence)."""
    checks = [
        Check("psf_fwhm", m.psf_fwhm, limits.psf_fwhm, "arcsec",
              "PSF FWHM of bright unsaturated stars"),
        Check("astro_nstars", m.astro_nstars, limits.astro_nstars,
              description="reference stars matched"),
        Check("astro_rms", m.astro_rms, limits.astro_rms, "arcsec",
              "astrometric RMS against the reference catalog"),
    ]  # fmt: skip
    if m.photo_status != PHOTO_OK:
        return [*checks, Check("zp_measured", 0.0, limits.zp_measured,
                               description="zero-point measured")]  # fmt: skip
    return [
        *checks,
        Check("zp_err", m.zp_err, limits.zp_err, "mag", "zero-point uncertainty"),
        Check("transparency", m.transparency, limits.transparency,
              description="measured / nominal flux at this airmass"),
    ]  # fmt: skip


def fringe_check(
    band: str, corrected: bool, night: str | None, limits: NightlyLimits = QC_LIMITS
) -> Check:
    """Whether a CCD in a fringing band got its fringe correction (``night`` of the frame)."""
    return Check(
        "fringe_corrected",
        1.0 if corrected else 0.0,
        limits.fringe_corrected,
        description=f"{band} needs a fringe correction",
        reference=f"master fringe of {night}" if corrected else None,
    )


def mosaic_checks(
    ccds_reduced: float,
    seeing: float | None,
    transparency: float | None,
    astro_rms: float | None,
    limits: NightlyLimits = QC_LIMITS,
) -> list[Check]:
    """Checks of one science exposure: fraction of CCDs reduced and medians over its CCDs."""
    return [
        Check("ccds_reduced", ccds_reduced, limits.ccds_reduced,
              description="fraction of CCDs reduced"),
        Check("seeing", seeing, limits.psf_fwhm, "arcsec", "median PSF FWHM over CCDs"),
        Check("transparency", transparency, limits.mosaic_transparency,
              description="median over CCDs"),
        Check("astro_rms", astro_rms, limits.astro_rms, "arcsec",
              "median astrometric RMS over CCDs"),
    ]  # fmt: skip


def _worst_abs(stats: Mapping[int, Mapping[str, float]], key: str) -> float:
    return float(np.nanmax([abs(v.get(key, np.nan)) for v in stats.values()]))


def bias_checks(
    stats: Mapping[int, Mapping[str, float]], limits: NightlyLimits = QC_LIMITS
) -> list[Check]:
    """Checks of a master bias from its per-CCD statistics (``level``, ``noise``,
    ``structure``, e-; :func:`surveydm.reduction.calibration_frames.master_bias`)."""
    return [
        Check("bias_level_max", _worst_abs(stats, "level"), limits.bias_level, "e-",
              "largest |residual level| after overscan, over CCDs"),
        Check("bias_noise_max", _worst_abs(stats, "noise"), limits.bias_noise, "e-",
              "largest pixel noise of the master bias, over CCDs"),
        Check("bias_structure_max", _worst_abs(stats, "structure"), limits.bias_structure,
              "e-", "largest rms of the smoothed bias structure"),
    ]  # fmt: skip


def bad_pixel_checks(
    stats: Mapping[int, Mapping[str, float]], limits: NightlyLimits = QC_LIMITS
) -> list[Check]:
    """Checks of a bad-pixel mask from its per-CCD statistics (``bad_fraction``, ``n_darks``;
    :func:`surveydm.reduction.bad_pixel_mask.bad_pixel_mask`)."""
    if not stats:
        return []
    darks = min(v.get("n_darks", 0.0) for v in stats.values())
    return [
        Check("bad_pixel_fraction_max", _worst_abs(stats, "bad_fraction"),
              limits.bad_pixel_fraction, description="largest masked fraction over CCDs"),
        Check("bad_pixel_darks", darks, limits.bad_pixel_darks,
              description="darks the hot pixels were found on (0: flats only)"),
    ]  # fmt: skip


def flat_checks(
    stats: Mapping[int, Mapping[str, float]],
    stability: Sequence[float] | None,
    previous_night: str | None,
    limits: NightlyLimits = QC_LIMITS,
) -> list[Check]:
    """Checks of a master flat: frame-to-master residuals (``residual_rms`` per CCD) and, when
    a previous master flat exists, the rms of the ratio to it per CCD (``stability``)."""
    resid = float(np.nanmax([v.get("residual_rms", np.nan) for v in stats.values()]))
    checks = [
        Check("flat_residual_rms_max", resid, limits.flat_residual_rms,
              description="largest rms of frame-to-master residuals over CCDs"),
    ]  # fmt: skip
    if stability is None:
        return checks
    return [
        *checks,
        Check("flat_stability_rms", max(stability), limits.flat_stability_rms,
              description="largest rms of the ratio to the previous master flat",
              reference=f"master flat of {previous_night}"),
    ]  # fmt: skip


def fringe_frames_check(n_exposures: int, limits: NightlyLimits = QC_LIMITS) -> Check:
    """Science exposures available for a fringe frame."""
    return Check("fringe_frames", n_exposures, limits.fringe_frames,
                 description="science exposures available for the fringe frame")  # fmt: skip
