"""Step 6 of source extraction: the fixed circular aperture at each source's final position,
and the mask bits inside it (SExtractor ``FLUX_APER`` and ``IMAFLAGS_ISO``-like flags)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep

from surveydm.reduction.extraction.image import MeasurementImage
from surveydm.reduction.masks import MaskBit
from surveydm.reduction.stamps import pixel_stamps

__all__ = ["MASK_FLAG_SHIFT", "ApertureFlux", "aperture_mask_bits", "aperture_photometry"]

#: ``flags`` holds the aperture mask bits shifted left by this many bits.
MASK_FLAG_SHIFT = 8

_SATURATED = int(MaskBit.SATURATED)


@dataclass(frozen=True)
class ApertureFlux:
    """Fixed-aperture photometry (arrays of length n).

    Attributes:
        flux, flux_err: flux within the circle and its error, e-.
        flags: int32 sep aperture flags (``sep.APER_TRUNC`` ...).
        mask_bits: int64 OR of the ``MaskBit`` bits of the pixels within the circle (plus
            SATURATED where the peak reaches the saturation level).
    """

    flux: np.ndarray
    flux_err: np.ndarray
    flags: np.ndarray
    mask_bits: np.ndarray


def aperture_photometry(
    img: MeasurementImage,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    peak_level: np.ndarray,
    saturation: float | None,
) -> ApertureFlux:
    """Sum within ``radius`` pixels of (x, y) (n,) (exact overlap, 5x5 sub-pixels) and the
    mask bits there; ``peak_level`` (n,) e- with the background is compared to ``saturation``."""
    flux, ferr, aflag = sep.sum_circle(
        img.sub, x, y, radius, err=img.err_sum, gain=img.sum_gain, mask=img.meas_mask, subpix=5
    )
    bits = aperture_mask_bits(img.mask, x, y, radius, saturation, peak_level)
    return ApertureFlux(flux=flux, flux_err=ferr, flags=aflag.astype(np.int32), mask_bits=bits)


def aperture_mask_bits(
    m: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    saturation: float | None,
    peak_level: np.ndarray,
) -> np.ndarray:
    """OR of the mask bits within ``radius`` of each source (+ SATURATED by peak level)."""
    bits = np.zeros(len(x), dtype=np.int64)
    if m is not None and len(x):
        hm = int(math.ceil(radius))
        mvals, mvalid, mdx, mdy = pixel_stamps(m, x, y, hm, fill=0)
        inside = (mdx**2 + mdy**2 <= radius**2) & mvalid
        bits = np.bitwise_or.reduce(
            np.where(inside, mvals.astype(np.int64), 0).reshape(len(x), -1), axis=1
        )
    if saturation is not None:
        bits |= np.where(peak_level >= saturation, _SATURATED, 0)
    return bits
