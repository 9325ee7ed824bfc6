"""Depth, area and masks of a co-added tile (seed 002: image depth / completeness, tile area
defined as a fraction of the exposure time, bright-star masks).

The depth is the 5-sigma limiting magnitude in a circular aperture, with sigma the robust
standard deviation of fluxes in apertures placed at random on empty sky (so the correlated
noise of resampled images is counted; Labbe et al. 2003, AJ 125, 1107, sect. 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from scipy import ndimage


@dataclass(frozen=True)
class Depth:
    """Limiting magnitude of a tile.

    Attributes:
        mag_lim: ``nsigma``-sigma limiting AB magnitude in the aperture; sigma: flux noise
        in the aperture; radius: aperture radius, pixels; n_apertures: empty apertures used.
    """

    mag_lim: float
    sigma: float
    radius: float
    n_apertures: int


def source_mask(image: np.ndarray, weight: np.ndarray, *, nsigma: float = 1.5, grow: int = 4):
    """(ny, nx) bool: pixels of detected sources (``nsigma`` above the noise, grown by
    ``grow`` pixels) or without data."""
    nodata = (weight <= 0) | ~np.isfinite(image)
    err = np.where(nodata, 0.0, 1.0 / np.sqrt(np.where(nodata, 1.0, weight))).astype(np.float32)
    data = np.ascontiguousarray(np.where(nodata, 0.0, image), dtype=np.float32)
    seg = sep.extract(data, nsigma, err=err, mask=nodata, minarea=3, segmentation_map=True)[1]
    return ndimage.binary_dilation(seg > 0, iterations=grow) | nodata


def limiting_magnitude(
    image: np.ndarray,
    weight: np.ndarray,
    zp: float,
    radius: float,
    *,
    nsigma: float = 5.0,
    n_apertures: int = 2000,
    seed: int = 0,
    mask: np.ndarray | None = None,
) -> Depth:
    """``nsigma``-sigma limiting magnitude from random empty apertures.

    Args:
        image: (ny, nx) background-subtracted flux on zero-point ``zp`` (AB mag for 1 unit);
        weight: inverse variance (0: no data); radius: aperture radius, pixels;
        mask: pixels apertures must avoid (default: :func:`source_mask`).

    Returns:
        :class:`Depth` (``mag_lim`` NaN when fewer than 20 empty apertures fit).
    """
    bad = source_mask(image, weight) if mask is None else mask
    rng = np.random.default_rng(seed)
    ny, nx = image.shape
    r = int(np.ceil(radius)) + 1
    x = rng.uniform(r, nx - r - 1, n_apertures)
    y = rng.uniform(r, ny - r - 1, n_apertures)
    data = np.ascontiguousarray(np.nan_to_num(image), dtype=np.float32)
    # fraction of masked pixels in each aperture: keep only the clean ones
    frac, _, _ = sep.sum_circle(bad.astype(np.float32), x, y, radius, subpix=1)
    flux, _, _ = sep.sum_circle(data, x[frac == 0], y[frac == 0], radius, subpix=5)
    if len(flux) < 20:
        return Depth(float("nan"), float("nan"), radius, len(flux))
    sigma = 1.4826 * float(np.median(np.abs(flux - np.median(flux))))
    return Depth(float(zp - 2.5 * np.log10(nsigma * sigma)), sigma, radius, len(flux))


def tile_area_mask(exptime: np.ndarray, *, fraction: float = 0.5) -> np.ndarray:
    """(ny, nx) bool: the tile area, pixels whose summed exposure time reaches ``fraction``
    of the tile's maximum (seed 002: "tile area defined as > % texp")."""
    top = float(np.max(exptime)) if exptime.size else 0.0
    return exptime >= fraction * top if top > 0 else np.zeros(exptime.shape, bool)


def bright_star_mask(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    mag: np.ndarray,
    *,
    mag_limit: float,
    radius_at_limit: float,
    slope: float = 0.4,
) -> np.ndarray:
    """(ny, nx) bool: discs around stars brighter than ``mag_limit`` (pixel positions x, y),
    of radius ``radius_at_limit * 10**(slope * (mag_limit - mag) / 2)`` pixels: the halo
    radius grows with the square root of the flux for ``slope`` 0.4 (J-PLUS masks)."""
    m = np.zeros(shape, bool)
    ny, nx = shape
    yy, xx = np.ogrid[:ny, :nx]
    for xi, yi, mi in zip(x, y, mag, strict=True):
        if not mi < mag_limit:
            continue
        r = radius_at_limit * 10 ** (slope * (mag_limit - mi) / 2)
        m |= (xx - xi) ** 2 + (yy - yi) ** 2 <= r * r
    return m
