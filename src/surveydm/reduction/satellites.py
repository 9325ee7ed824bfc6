"""Satellite trails: long straight streaks found by a Hough transform and masked to their width
(seed 002: J-PLUS's daily pipeline builds "satellite masks" beside the bad-pixel masks).

Method: the image's significance above the sky, binned 2x2, is thresholded; connected
regions shorter than ``min_length`` pixels (stars, galaxies, cosmic rays) are dropped, and the
straight-line Hough transform (Duda & Hart 1972, CACM 15, 11; scikit-image ``hough_line``) of
the rest gives candidate lines. Each is refined by fitting a straight line to the trail's
centroids across it, kept when the trail covers ``min_coverage`` of the line within the image,
and masked out to where a Gaussian fitted to its median profile across the line falls below
5 % of the sky noise (or, if farther, to where that profile stays above three times its own
noise), plus one pixel. Trails are assumed to cross the whole image (a satellite crosses a
field in seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import curve_fit
from skimage.transform import hough_line, hough_line_peaks


@dataclass(frozen=True)
class Trail:
    """One straight trail: the line ``x cos(theta) + y sin(theta) = rho`` (pixels, 0-based).

    Attributes:
        rho: pixels; theta: rad; half_width: masked half-width, pixels; peak: median trail
            level on the line above the sky (image units); coverage: fraction of the line
            within the image where the trail is significant.
    """

    rho: float
    theta: float
    half_width: float
    peak: float
    coverage: float


@dataclass
class SatelliteTrails:
    """What :func:`find_satellite_trails` found: the (ny, nx) bool ``mask`` of the trails'
    pixels and the ``trails``."""

    mask: np.ndarray
    trails: list[Trail] = field(default_factory=list)


def find_satellite_trails(
    image: np.ndarray,
    sky: np.ndarray,
    rms: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    threshold: float = 2.5,
    min_length: int = 200,
    min_coverage: float = 0.8,
    max_trails: int = 4,
    max_half_width: int = 40,
) -> SatelliteTrails:
    """Find and mask satellite trails (module doc).

    Args:
        image: (ny, nx) image with the sky (any unit); sky, rms: (ny, nx) sky level and noise
            in that unit (e.g. :class:`~surveydm.reduction.extraction.Background`).
        mask: optional (ny, nx) bool or bit mask of pixels to ignore (saturated, bleed trails,
            bad columns, cosmic rays: bleed trails and bad columns are straight lines too).
        threshold: significance of the 2x2-binned image (in its own noise) that a trail
            pixel must exceed.
        min_length: shortest trail, pixels (also the shortest connected region considered;
            a Hough peak in the binned image needs ``0.35 min_length`` votes).
        min_coverage: fraction of the line that must be above ``threshold``.
        max_trails: most trails looked for; max_half_width: widest half-width masked, pixels.

    Returns:
        :class:`SatelliteTrails`.

    Raises:
        ValueError: shapes differ or ``image`` is not 2-d.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or np.shape(sky) != img.shape or np.shape(rms) != img.shape:
        raise ValueError(
            f"image, sky and rms must be 2-d of one shape: {img.shape}, {np.shape(sky)}, "
            f"{np.shape(rms)}"
        )
    bad = np.zeros(img.shape, bool) if mask is None else (np.asarray(mask) != 0)
    resid = img - sky
    resid[bad] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = resid / rms
    z[~np.isfinite(z)] = 0.0
    zb = _bin2(z)  # 2x2 binned: unit noise
    bad_b = bad[0:-1:2, 0:-1:2] & bad[1::2, 0:-1:2] & bad[0:-1:2, 1::2] & bad[1::2, 1::2]
    out = SatelliteTrails(np.zeros(img.shape, bool))
    long = _long_regions(zb > threshold, min_length // 2)
    if not long.any():
        return out
    angles = np.linspace(-np.pi / 2, np.pi / 2, 900, endpoint=False)
    hspace, thetas, rhos = hough_line(long, theta=angles)
    _, peak_t, peak_r = hough_line_peaks(
        hspace, thetas, rhos, min_distance=max_half_width, min_angle=10,
        threshold=int(0.35 * min_length), num_peaks=max_trails,
    )  # fmt: skip
    noise = float(np.median(rms[::8, ::8]))
    for theta, rho_b in zip(peak_t, peak_r, strict=True):
        # binned pixel (i, j) covers pixels 2i, 2i + 1: x = 2 x_b + 0.5
        rho = 2 * float(rho_b) + 0.5 * (math.cos(theta) + math.sin(theta))
        refined = _refine(resid, bad, rho, float(theta), max_half_width)
        if refined is None:
            continue
        rho, theta = refined
        rho_b = (rho - 0.5 * (math.cos(theta) + math.sin(theta))) / 2
        coverage, length = _coverage(zb, bad_b, rho_b, theta, threshold)
        if coverage < min_coverage or 2 * length < min_length:
            continue
        half, peak = _half_width(resid, bad, rho, theta, noise, max_half_width)
        out.trails.append(Trail(rho, theta, half, peak, coverage))
        out.mask |= _band(img.shape, rho, theta, half)
    return out


def _bin2(a: np.ndarray) -> np.ndarray:
    """2x2 block sums / 2 of ``a`` (odd last row / column dropped): unit noise in, unit out."""
    h, w = a.shape[0] // 2, a.shape[1] // 2
    a = a[: 2 * h, : 2 * w]
    out = a[0::2, 0::2] + a[1::2, 0::2]
    out += a[0::2, 1::2]
    out += a[1::2, 1::2]
    out *= np.float32(0.5)
    return out


def _long_regions(binary: np.ndarray, min_length: int) -> np.ndarray:
    """The connected (8-connected) regions of ``binary`` at least ``min_length`` long in x or y."""
    labels, n = ndimage.label(binary, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros(binary.shape, bool)
    keep = np.zeros(n + 1, bool)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None and max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) >= min_length:
            keep[i] = True
    return keep[labels]


def _line_points(shape, rho: float, theta: float, step: float = 1.0):
    """Points (x, y) every ``step`` pixels along the line within the image, and the line's
    unit normal (nx, ny)."""
    ny, nx = shape
    c, s = math.cos(theta), math.sin(theta)
    x0, y0 = rho * c, rho * s
    half = math.hypot(nx, ny) + abs(rho)
    t = np.arange(-half, half, step)
    x, y = x0 - t * s, y0 + t * c
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    return x[inside], y[inside], (c, s)


def _profile(resid, bad, rho, theta, offsets, step: float = 2.0):
    """(n_offsets, n_points) values of ``resid`` (NaN where bad or outside) at the nearest pixel
    of each point along the line shifted by each offset along the normal."""
    x, y, (c, s) = _line_points(resid.shape, rho, theta, step)
    ny, nx = resid.shape
    xs = np.rint(x[None, :] + np.asarray(offsets)[:, None] * c).astype(int)
    ys = np.rint(y[None, :] + np.asarray(offsets)[:, None] * s).astype(int)
    ok = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
    vals = np.full(xs.shape, np.nan, np.float32)
    vals[ok] = resid[ys[ok], xs[ok]]
    vals[ok] = np.where(bad[ys[ok], xs[ok]], np.nan, vals[ok])
    return vals, x, y


def _refine(resid, bad, rho, theta, max_half_width):
    """The line through the trail's centroids across the Hough line (least squares, clipped),
    as (rho, theta); None when too few centroids are measured."""
    offsets = np.arange(-max_half_width // 2, max_half_width // 2 + 1)
    vals, x, y = _profile(resid, bad, rho, theta, offsets, step=4.0)
    w = np.nan_to_num(np.maximum(vals, 0.0))
    total = w.sum(axis=0)
    good = total > 0
    if good.sum() < 10:
        return None
    shift = (w * offsets[:, None]).sum(axis=0)[good] / total[good]
    t = np.hypot(x[good] - x[good][0], y[good] - y[good][0])
    keep = np.ones(t.size, bool)
    for _ in range(3):  # fit offset = a + b t, clipping outliers (stars beside the trail)
        a_b = np.polyfit(t[keep], shift[keep], 1)
        res = shift - np.polyval(a_b, t)
        keep = np.abs(res) < max(3 * 1.4826 * np.median(np.abs(res[keep])), 0.5)
    b, a = a_b
    c, s = math.cos(theta), math.sin(theta)
    # points on the refined line, in pixels: shifted along the normal by a + b t
    px0, py0 = x[good][0] + a * c, y[good][0] + a * s
    px1, py1 = x[good][-1] + (a + b * t[-1]) * c, y[good][-1] + (a + b * t[-1]) * s
    theta_new = math.atan2(px1 - px0, -(py1 - py0))
    rho_new = px0 * math.cos(theta_new) + py0 * math.sin(theta_new)
    return rho_new, theta_new


def _coverage(zs, bad, rho, theta, threshold) -> tuple[float, float]:
    """Fraction of the line's good points where the trail is above ``threshold`` (best of the
    pixel on the line and its two neighbours across it), and the line's length in pixels."""
    vals, x, _ = _profile(zs, bad, rho, theta, [-1, 0, 1], step=1.0)
    best = np.nanmax(np.where(np.isnan(vals), -np.inf, vals), axis=0)
    good = np.isfinite(best)
    if not good.any():
        return 0.0, 0.0
    return float((best[good] > threshold).mean()), float(x.size)


def _half_width(resid, bad, rho, theta, noise, max_half_width) -> tuple[float, float]:
    """Half-width (pixels) to mask across the trail, and the trail's peak above the local sky.

    The median profile across the trail, less its median beyond ``max_half_width / 2`` (the
    local sky: the mesh background is biased by faint sources), is fitted with a Gaussian; the
    trail is masked out to where that falls below 5 % of the sky noise, or to where the profile
    itself stays above three times its own noise if that is farther, plus one pixel."""
    offsets = np.arange(-max_half_width, max_half_width + 1)
    vals, _, _ = _profile(resid, bad, rho, theta, offsets, step=1.0)
    prof = np.nanmedian(vals, axis=1)
    n = np.maximum(np.isfinite(vals).sum(axis=1), 1)
    outer = np.abs(offsets) > max_half_width // 2
    prof = prof - np.nanmedian(prof[outer])
    above = prof > 3 * 1.2533 * noise / np.sqrt(n)
    centre, empirical = max_half_width, 0
    for side in (1, -1):
        k = 0
        while k < max_half_width and above[centre + side * (k + 1)]:
            k += 1
        empirical = max(empirical, k)
    peak, model = float(prof[centre]), 0.0
    try:
        (amp, mu, sig), _ = curve_fit(
            lambda d, a, m, s: a * np.exp(-0.5 * ((d - m) / s) ** 2),
            offsets[~outer], np.nan_to_num(prof[~outer]), p0=(max(peak, noise), 0.0, 1.5),
        )  # fmt: skip
        amp, sig = float(amp), abs(float(sig))
        if amp > 0.05 * noise and sig < max_half_width:
            peak = amp
            model = abs(float(mu)) + sig * math.sqrt(2 * math.log(amp / (0.05 * noise)))
    except (RuntimeError, ValueError):
        pass
    return float(min(max(model, empirical) + 1, max_half_width)), peak


def _band(shape, rho, theta, half_width) -> np.ndarray:
    """(ny, nx) bool, True within ``half_width`` pixels of the line."""
    ny, nx = shape
    ys, xs = np.ogrid[0:ny, 0:nx]
    d = xs * np.float32(math.cos(theta)) + ys * np.float32(math.sin(theta)) - np.float32(rho)
    return np.abs(d) <= half_width
