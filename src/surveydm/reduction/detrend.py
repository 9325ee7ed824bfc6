"""Instrumental-signature removal of an assembled CCD (electrons).

Order (seed 002, J-PLUS daily pipeline: bias level, non-linearity, dark, flat field, fringing):
overscan, crosstalk, non-linearity and gain are applied when the CCD is assembled
(:func:`surveydm.reduction.assemble.assemble_ccd`); :func:`detrend` then subtracts the master
bias (residual 2-d bias structure) and the dark current, divides by the master flat, and
subtracts the scaled fringe frame. Works in place on one float32 buffer.
"""

from __future__ import annotations

import numpy as np

from surveydm.reduction.fringe import subtract_fringe


def detrend(
    image_e: np.ndarray,
    *,
    bias: np.ndarray | None = None,
    dark: np.ndarray | None = None,
    exptime: float = 0.0,
    flat: np.ndarray | None = None,
    fringe: np.ndarray | None = None,
    fringe_scale: float | None = None,
    bad_pixel_mask: np.ndarray | None = None,
    overwrite: bool = False,
) -> np.ndarray:
    """Bias, dark, flat and fringe correction of one CCD.

    Args:
        image_e: (ny, nx) assembled CCD in electrons (overscan-subtracted, gain applied).
        bias: master bias (e-), subtracted.
        dark: master dark current (e-/s), ``dark * exptime`` subtracted.
        exptime: exposure time (s) for the dark.
        flat: master flat (median 1); the image is divided by it. Pixels where the flat is not
            positive or not finite are set to 0 (they are masked NO_DATA/BAD_PIXEL by
            :func:`surveydm.reduction.masks.build_mask`).
        fringe: fringe frame; subtracted scaled by ``fringe_scale`` or, when None, by the
            least-squares scale (:func:`surveydm.reduction.fringe.fit_fringe_scale`).
        bad_pixel_mask: bool or bit mask; nonzero pixels are left out of the fringe fit.
        overwrite: work in place on ``image_e`` (must be float32) instead of a copy.

    Returns:
        (ny, nx) float32 detrended image in electrons.

    Raises:
        ValueError: a calibration frame's shape differs from the image's, or ``dark`` is given
            with a negative ``exptime``.
    """
    shape = np.shape(image_e)
    for name, arr in (("bias", bias), ("dark", dark), ("flat", flat), ("fringe", fringe)):
        if arr is not None and np.shape(arr) != shape:
            raise ValueError(f"{name} has shape {np.shape(arr)}, image has {shape}")
    src = np.asarray(image_e)
    out = src if overwrite and src.dtype == np.float32 else np.empty(shape, np.float32)
    if bias is not None:
        np.subtract(src, bias, out=out, casting="unsafe")
    elif out is not src:
        np.copyto(out, src, casting="unsafe")
    if dark is not None and exptime:
        if exptime < 0:
            raise ValueError(f"exptime must be >= 0, got {exptime}")
        out -= np.float32(exptime) * np.asarray(dark, dtype=np.float32)
    if flat is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(out, flat, out=out, casting="unsafe")
        if not np.min(flat) > 0:  # a min (NaN-propagating) is cheaper than a mask
            with np.errstate(invalid="ignore"):
                np.putmask(out, ~(flat > 0), np.float32(0.0))
    if fringe is not None:
        subtract_fringe(out, fringe, scale=fringe_scale, mask=bad_pixel_mask, out=out)
    return out
