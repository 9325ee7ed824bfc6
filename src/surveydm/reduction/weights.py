"""Weight maps: inverse variance per pixel of a detrended image (1/e-^2).

Noise model of a detrended pixel ``I = (R - B) / F`` (R raw electrons, B bias, F flat):
``var(I) = (max(I * F, 0) + read_noise^2) / F^2`` -- Poisson noise of the collected charge
(source + sky + dark, ``I * F`` electrons) plus read noise, propagated through the flat (the
master frames' own noise is neglected, as in SExtractor's MAP_WEIGHT convention and the IPP
variance image). Masked pixels get weight 0.
"""

from __future__ import annotations

import numpy as np


def variance_map(
    image_e: np.ndarray,
    flat: np.ndarray | None,
    read_noise_e: float | np.ndarray,
) -> np.ndarray:
    """(ny, nx) float32 variance (e-^2) of a detrended image (sky not subtracted).

    Args:
        image_e: detrended image (e-), background included.
        flat: master flat used (median 1), or None for flat = 1.
        read_noise_e: read noise (e-), scalar or (ny, nx) map.
    """
    var = np.array(image_e, dtype=np.float32, copy=True)
    if flat is not None:
        var *= flat
    np.maximum(var, 0.0, out=var)
    var += np.square(np.asarray(read_noise_e, dtype=np.float32))
    if flat is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            var /= np.square(np.asarray(flat, dtype=np.float32))
    return var


def weight_map(
    image_e: np.ndarray,
    flat: np.ndarray | None,
    read_noise_e: float | np.ndarray,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Inverse-variance weight map (1/e-^2), zero where masked or uncalibrated.

    Args:
        image_e: (ny, nx) detrended image (e-), background included.
        flat: (ny, nx) master flat (median 1), or None.
        read_noise_e: read noise (e-), scalar or (ny, nx) map
            (``AssembledCCD.read_noise_map()``).
        mask: (ny, nx) bit mask; nonzero pixels get weight 0.

    Returns:
        (ny, nx) float32 weights.

    Raises:
        ValueError: shapes differ.
    """
    shape = np.shape(image_e)
    for name, arr in (("flat", flat), ("mask", mask)):
        if arr is not None and np.shape(arr) != shape:
            raise ValueError(f"{name} has shape {np.shape(arr)}, image has {shape}")
    var = variance_map(image_e, flat, read_noise_e)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.divide(np.float32(1.0), var, out=var)
    w[~np.isfinite(w)] = 0.0
    if flat is not None:
        w[~(np.asarray(flat) > 0)] = 0.0
    if mask is not None:
        w[np.asarray(mask) != 0] = 0.0
    return w
