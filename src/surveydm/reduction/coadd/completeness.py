"""Completeness of a tile's detections, measured by injecting artificial point sources of
known magnitude into the co-add and detecting them again (seed 002: image depth /
completeness; the method of e.g. Bertin & Arnouts 1996 sect. 9 and every deep-field survey)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from surveydm.reduction.coadd.catalog import CatalogConfig, detect_sources


@dataclass(frozen=True)
class Completeness:
    """Fraction of injected sources recovered per magnitude bin.

    Attributes:
        mag: (k,) bin centres, AB mag; fraction: (k,) recovered fraction; n_injected: per bin.
    """

    mag: np.ndarray
    fraction: np.ndarray
    n_injected: np.ndarray

    def at(self, mag: float) -> float:
        """Completeness interpolated at ``mag``."""
        return float(np.interp(mag, self.mag, self.fraction))


def inject_point_sources(
    image: np.ndarray, stamp: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray
) -> np.ndarray:
    """A copy of ``image`` (ny, nx) with the normalised PSF ``stamp`` added at (x, y) (0-based
    pixels, sub-pixel shifted) scaled to ``flux``; sources whose stamp leaves the image are
    skipped."""
    out = np.array(image, dtype=np.float32, copy=True)
    half = stamp.shape[0] // 2
    ny, nx = out.shape
    for xi, yi, fi in zip(x, y, flux, strict=True):
        x0, y0 = int(round(xi)), int(round(yi))
        if x0 - half < 0 or y0 - half < 0 or x0 + half >= nx or y0 + half >= ny:
            continue
        p = ndimage.shift(stamp, (yi - y0, xi - x0), order=3, mode="constant")
        out[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1] += fi * p
    return out


def completeness(
    image: np.ndarray,
    weight: np.ndarray,
    stamp: np.ndarray,
    zp: float,
    mags: np.ndarray,
    *,
    per_bin: int = 15,
    rounds: int = 4,
    min_separation: float = 10.0,
    match_radius: float = 1.5,
    config: CatalogConfig = CatalogConfig(),
    seed: int = 0,
) -> Completeness:
    """Recovered fraction of artificial point sources per magnitude.

    Args:
        image: (ny, nx) background-subtracted co-add on zero-point ``zp``; weight: inverse
            variance; stamp: its normalised PSF; mags: (k,) magnitudes to inject.
        per_bin: sources per magnitude and round; rounds: injections (few sources each, so
            they do not crowd the image); min_separation: pixels between injected sources and
            from the sources already detected; match_radius: pixels.

    Returns:
        :class:`Completeness`. A source counts as recovered when a detection lies within
        ``match_radius`` of it and none did before injection.
    """
    rng = np.random.default_rng(seed)
    ny, nx = image.shape
    half = stamp.shape[0] // 2
    base = detect_sources(image, weight, config)
    base_tree = cKDTree(np.column_stack([base.x, base.y])) if len(base) else None
    found = np.zeros(len(mags))
    total = np.zeros(len(mags))
    usable = weight > 0
    for _ in range(rounds):
        for k, m in enumerate(mags):
            x, y = _positions(rng, usable, half, per_bin, min_separation, base_tree)
            if not len(x):
                continue
            flux = np.full(len(x), 10 ** (-0.4 * (m - zp)))
            det = detect_sources(inject_point_sources(image, stamp, x, y, flux), weight, config)
            if len(det):
                d, _ = cKDTree(np.column_stack([det.x, det.y])).query(np.column_stack([x, y]))
                found[k] += int((d <= match_radius).sum())
            total[k] += len(x)
    frac = np.where(total > 0, found / np.maximum(total, 1), np.nan)
    return Completeness(np.asarray(mags, float), frac, total.astype(int))


def _positions(
    rng: np.random.Generator,
    usable: np.ndarray,
    margin: int,
    n: int,
    min_sep: float,
    avoid: cKDTree | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` random positions on usable pixels, ``min_sep`` pixels from each other and
    from the points of ``avoid``."""
    ny, nx = usable.shape
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(20 * n):
        if len(xs) == n:
            break
        x, y = rng.uniform(margin, nx - margin - 1), rng.uniform(margin, ny - margin - 1)
        if not usable[int(y), int(x)]:
            continue
        if avoid is not None and avoid.query([x, y])[0] < min_sep:
            continue
        if xs and np.min(np.hypot(np.asarray(xs) - x, np.asarray(ys) - y)) < min_sep:
            continue
        xs.append(x)
        ys.append(y)
    return np.asarray(xs), np.asarray(ys)
