"""Instrumental-signature removal of an assembled CCD (electrons).

Order (seed 002, J-PLUS daily pipeline: bias level, non-linearity, dark, flat field, fringing):
overscan, crosstalk, non-linearity and gain are applied when the CCD is assembled
(:func:`surveydm.reduction.assemble.assemble_ccd`, which also takes the master bias, dark and
flat to apply them in the same pass over the pixels); :func:`detrend` subtracts the master bias
(residual 2-d bias structure) and the dark current, divides by the master flat (one compiled
pass, :mod:`surveydm.reduction.kernels`), and subtracts the scaled fringe frame.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from surveydm.reduction import kernels
from surveydm.reduction.fringe import subtract_fringe


class CalibrationArgs(NamedTuple):
    """Master bias, dark and flat as the kernels take them (see
    :func:`surveydm.reduction.kernels.finish_row`)."""

    bias: np.ndarray | None
    dark: np.ndarray | None
    dark_scale: np.float32
    dark_level: np.float32
    flat: np.ndarray | None


def calibration_args(
    shape: tuple[int, ...],
    *,
    bias: np.ndarray | None = None,
    dark: np.ndarray | float | None = None,
    exptime: float = 0.0,
    flat: np.ndarray | None = None,
) -> CalibrationArgs:
    """Check the master frames against the image ``shape`` and convert them to C-contiguous
    float32 (no copy when they are already); a scalar ``dark`` is a uniform dark current.

    Raises:
        ValueError: a frame's shape differs from ``shape``, or ``dark`` is given with a
            negative ``exptime``.
    """
    for name, arr in (("bias", bias), ("dark", dark), ("flat", flat)):
        if arr is not None and np.ndim(arr) and np.shape(arr) != tuple(shape):
            raise ValueError(f"{name} has shape {np.shape(arr)}, image has {tuple(shape)}")
    if dark is not None and exptime < 0:
        raise ValueError(f"exptime must be >= 0, got {exptime}")

    def frame(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else np.ascontiguousarray(arr, dtype=np.float32)

    scale = np.float32(exptime)
    uniform = dark is not None and np.ndim(dark) == 0 and exptime
    return CalibrationArgs(
        bias=frame(bias),
        dark=frame(dark) if dark is not None and np.ndim(dark) and exptime else None,
        dark_scale=scale,
        dark_level=scale * np.float32(dark) if uniform else np.float32(0.0),
        flat=frame(flat),
    )


def detrend(
    image_e: np.ndarray,
    *,
    bias: np.ndarray | None = None,
    dark: np.ndarray | float | None = None,
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
        dark: master dark current (e-/s), ``dark * exptime`` subtracted; a scalar is a
            uniform dark current.
        exptime: exposure time (s) for the dark.
        flat: master flat (median 1); the image is divided by it. Pixels where the flat is not
            positive or not finite are set to 0 (they are masked NO_DATA/BAD_PIXEL by
            :func:`surveydm.reduction.masks.build_mask`).
        fringe: fringe frame; subtracted scaled by ``fringe_scale`` or, when None, by the
            least-squares scale (:func:`surveydm.reduction.fringe.fit_fringe_scale`).
        bad_pixel_mask: bool or bit mask; nonzero pixels are left out of the fringe fit.
        overwrite: work in place on ``image_e`` (must be C-contiguous float32, otherwise a
            copy is made) instead of a copy.

    Returns:
        (ny, nx) float32 detrended image in electrons.

    Raises:
        ValueError: a calibration frame's shape differs from the image's, or ``dark`` is given
            with a negative ``exptime``.
    """
    shape = np.shape(image_e)
    if fringe is not None and np.shape(fringe) != shape:
        raise ValueError(f"fringe has shape {np.shape(fringe)}, image has {shape}")
    cal = calibration_args(shape, bias=bias, dark=dark, exptime=exptime, flat=flat)
    src = np.asarray(image_e)
    in_place = overwrite and src.dtype == np.float32 and src.flags.c_contiguous
    out = src if in_place else np.empty(shape, np.float32)
    if any(x is not None for x in (cal.bias, cal.dark, cal.flat)) or cal.dark_level:
        if src.ndim != 2:
            raise ValueError(f"image must be 2-d, got shape {shape}")
        kernels.calibrate(np.ascontiguousarray(src, dtype=np.float32), out, *cal)
    elif out is not src:
        np.copyto(out, src, casting="unsafe")
    if fringe is not None:
        subtract_fringe(out, fringe, scale=fringe_scale, mask=bad_pixel_mask, out=out)
    return out
