"""Step 2 of source extraction: Kron (AUTO) photometry by SExtractor's definition (Kron 1980;
SExtractor ``FLUX_AUTO``, Bertin & Arnouts 1996 sect. 10.4; SExtractor 2.25
``photom.c: computeautoflux``), each object's neighbours masked through the segmentation map.

1. ``r_kron = sum(r I) / sum(I)`` over the whole pixels within the ellipse of 6 isophotal radii
   (``r`` in units of the isophotal a, b: SExtractor's ``KRON_NSIG``), the neighbours' and the
   masked pixels left out (sep.kron_radius with ``segmap``/``seg_id``).
2. The Kron aperture is the ellipse of axes ``K a, K b`` with ``K = max(k r_kron, R_min)``:
   ``PHOT_AUTOPARAMS k, R_min`` = 2.5, 3.5 ("k r_kron ... if smaller than R_min, R_min is used",
   both in units of a, b; SExtractor manual, "Automatic aperture magnitudes: MAG_AUTO"); also
   ``R_min`` where the Kron radius cannot be measured.
3. The flux sums that ellipse (pixels cut by it as 5 x 5 sub-pixels), a neighbour's or masked
   pixel replaced by its mirror image through the centre (``MASK_TYPE CORRECT``, see
   :mod:`.segmented`). Its variance is the sum of the pixel variances (the noise map) plus
   ``flux / gain`` for the source's Poisson noise when the noise map lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep

from surveydm.reduction.extraction.detection import Detections
from surveydm.reduction.extraction.image import MeasurementImage
from surveydm.reduction.extraction.segmented import APER_HASMASKED, ellipse_sums

__all__ = ["KRON_NSIG", "KronPhotometry", "kron_photometry", "measurement_mask", "segment_ids"]

#: Radius (units of the isophotal a, b) within which ``r_kron`` is measured (SExtractor).
KRON_NSIG = 6.0


@dataclass(frozen=True)
class KronPhotometry:
    """Kron fluxes of the detections (arrays of length n).

    Attributes:
        kron_radius: first-moment radius ``r_kron`` within 6 isophotal radii, in units of
            a, b (0 where it could not be measured).
        scale: the Kron aperture ``max(k r_kron, R_min)``, in units of a, b.
        flux, flux_err: flux within the ellipse of axes ``scale a, scale b`` and its error, e-.
        flags: int32 sep flags of the Kron radius and of the sum (``APER_HASMASKED`` only for
            pixels of the measurement mask, not for neighbours).
    """

    kron_radius: np.ndarray
    scale: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    flags: np.ndarray

    @property
    def snr(self) -> np.ndarray:
        """Signal-to-noise ratio ``flux / flux_err`` (0 where the error is not positive)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.flux_err > 0, self.flux / self.flux_err, 0.0)


def segment_ids(det: Detections) -> np.ndarray:
    """(n,) int32 label of each detection in ``det.segmap`` (object i is i + 1)."""
    return np.arange(1, len(det) + 1, dtype=np.int32)


def measurement_mask(img: MeasurementImage) -> np.ndarray:
    """(ny, nx) bool pixels left out of the measurements (all False without a mask)."""
    if img.meas_mask is None:
        return np.zeros(img.shape, dtype=bool)
    return img.meas_mask


def kron_photometry(img: MeasurementImage, det: Detections, config) -> KronPhotometry:
    """Kron radius and flux of every detection (module docstring for the method).

    Args:
        img: the measured image (:func:`measurement_image`).
        det: the detections, with their segmentation map ``det.segmap``.
        config: an ``ExtractionConfig`` (``kron_factor`` k and ``min_kron_radius`` R_min).

    Returns:
        :class:`KronPhotometry` of the n detections.
    """
    ids = segment_ids(det)
    x0, y0, a, b, theta = det.x, det.y, det.a, det.b, det.theta
    seg = det.segmap
    kronrad, kflag = sep.kron_radius(
        img.sub, x0, y0, a, b, theta, KRON_NSIG, mask=img.meas_mask, segmap=seg, seg_id=ids
    )
    kronrad = np.where(np.isfinite(kronrad) & (kronrad > 0), kronrad, 0.0)
    scale = np.maximum(config.kron_factor * kronrad, config.min_kron_radius)
    var = np.square(img.err_sum, dtype=np.float32)
    flux, fvar, fflag = ellipse_sums(
        img.sub, var, seg, measurement_mask(img), x0, y0, a, b, theta, scale, ids
    )
    if img.sum_gain is not None:
        fvar = fvar + np.maximum(flux, 0.0) / img.sum_gain
    # sep sets APER_HASMASKED for the neighbours too: only the sum's flag (real masks) is kept
    flags = (kflag.astype(np.int32) & ~APER_HASMASKED) | fflag
    return KronPhotometry(
        kron_radius=kronrad, scale=scale, flux=flux, flux_err=np.sqrt(fvar), flags=flags
    )
