"""Step 2 of source extraction: Kron (AUTO) photometry (Kron 1980; SExtractor ``FLUX_AUTO``,
Bertin & Arnouts 1996 sect. 10.1.3, through sep)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep

from surveydm.reduction.extraction.detection import Detections
from surveydm.reduction.extraction.image import MeasurementImage

__all__ = ["KronPhotometry", "kron_photometry"]


@dataclass(frozen=True)
class KronPhotometry:
    """Kron fluxes of the detections (arrays of length n).

    Attributes:
        kron_radius: first-moment radius ``r_kron`` within 6 isophotal radii, in units of
            a, b (0 where it could not be measured).
        flux, flux_err: flux within the ellipse ``k r_kron`` (a circle of the minimum
            diameter for small objects) and its error, e-.
        flags: int32 sep flags of the Kron radius and of the sum.
    """

    kron_radius: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    flags: np.ndarray

    @property
    def snr(self) -> np.ndarray:
        """Signal-to-noise ratio ``flux / flux_err`` (0 where the error is not positive)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.flux_err > 0, self.flux / self.flux_err, 0.0)


def kron_photometry(img: MeasurementImage, det: Detections, config) -> KronPhotometry:
    """Kron radius and flux of every detection (``config``: an ``ExtractionConfig``, for
    ``kron_factor`` and ``min_kron_radius``, SExtractor ``PHOT_AUTOPARAMS``)."""
    x0, y0, a, b, theta = det.x, det.y, det.a, det.b, det.theta
    kronrad, kflag = sep.kron_radius(img.sub, x0, y0, a, b, theta, 6.0, mask=img.meas_mask)
    kronrad = np.where(np.isfinite(kronrad) & (kronrad > 0), kronrad, 0.0)
    flux, ferr, fflag = sep.sum_ellipse(
        img.sub,
        x0,
        y0,
        a,
        b,
        theta,
        config.kron_factor * np.maximum(kronrad, 1e-3),
        err=img.err_sum,
        gain=img.sum_gain,
        mask=img.meas_mask,
        subpix=1,
    )
    r_min = 0.5 * config.min_kron_radius
    small = kronrad * config.kron_factor * np.sqrt(a * b) < r_min
    if small.any():
        cf, cfe, cfl = sep.sum_circle(
            img.sub,
            x0[small],
            y0[small],
            r_min,
            err=img.err_sum,
            gain=img.sum_gain,
            mask=img.meas_mask,
            subpix=1,
        )
        flux[small], ferr[small], fflag[small] = cf, cfe, cfl
    flags = kflag.astype(np.int32) | fflag.astype(np.int32)
    return KronPhotometry(kron_radius=kronrad, flux=flux, flux_err=ferr, flags=flags)
