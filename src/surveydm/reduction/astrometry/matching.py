"""Steps 2 and 3 of the astrometric solution: the coarse rotation/offset vote (the "offset vote"
of Pan-STARRS' psastro and SCAMP's cross-correlation, Bertin 2006) and the refinement by
iterative one-to-one nearest-neighbour matching with an affine map."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import poisson

from surveydm.reduction.astrometry.catalogs import Sources
from surveydm.reduction.astrometry.projection import ProjectedReference, SearchFrame
from surveydm.reduction.astrometry.tan_sip import lstsq

__all__ = [
    "CoarseMatch",
    "RefinedMatch",
    "apply_affine",
    "coarse_match",
    "fit_affine",
    "refine_match",
    "unique_nearest",
]


def unique_nearest(tree: cKDTree, pts: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
    """One-to-one nearest-neighbour matches within radius: (query idx, tree idx, distance)."""
    if len(pts) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0)
    d, j = tree.query(pts, k=1, distance_upper_bound=radius)
    ok = np.isfinite(d)
    qi = np.nonzero(ok)[0]
    d, j = d[ok], j[ok]
    order = np.argsort(d, kind="stable")
    qi, j, d = qi[order], j[order], d[order]
    _, first = np.unique(j, return_index=True)
    keep = np.sort(first)
    return qi[keep], j[keep], d[keep]


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine map (3x2 matrix M, dst = [x, y, 1] @ M)."""
    return lstsq(np.column_stack([src, np.ones(len(src))]), dst)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(n, 2) points ``pts`` mapped by the (3, 2) affine matrix ``m`` (``[x, y, 1] @ m``)."""
    return np.column_stack([pts, np.ones(len(pts))]) @ m


def _offset_vote(
    src: np.ndarray,
    ref: np.ndarray,
    center: np.ndarray,
    max_offset_px: float,
    max_rotation_deg: float,
    bin_px: float,
) -> tuple[float, np.ndarray, int, float]:
    """Rotation/offset vote.

    Returns (rotation_deg, offset (2,), peak votes, mean votes per cell, cells searched).
    """
    rmax = float(np.max(np.hypot(*(src - center).T))) if len(src) else 1.0
    step = math.degrees(0.5 * bin_px / max(rmax, 1.0))
    n_steps = int(math.ceil(max_rotation_deg / step)) if max_rotation_deg > 0 else 0
    rotations = np.linspace(-max_rotation_deg, max_rotation_deg, 2 * n_steps + 1)
    if len(rotations) == 0:
        rotations = np.array([0.0])
    nb = int(math.ceil(2 * max_offset_px / bin_px)) + 1
    edges = (np.arange(nb + 1) - nb / 2.0) * bin_px
    best = (0.0, np.zeros(2), -1, 0.0, 1)
    n_cells = len(rotations) * (nb - 1) ** 2
    rel = src - center
    for rot in rotations:
        c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        rs = np.column_stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]])
        rs += center
        dx = (ref[None, :, 0] - rs[:, None, 0]).ravel()
        dy = (ref[None, :, 1] - rs[:, None, 1]).ravel()
        sel = (np.abs(dx) < edges[-1]) & (np.abs(dy) < edges[-1])
        h, _, _ = np.histogram2d(dx[sel], dy[sel], bins=(edges, edges))
        # 2x2 box sums so that a peak split over bin edges still counts fully.
        h2 = h[:-1, :-1] + h[1:, :-1] + h[:-1, 1:] + h[1:, 1:]
        k = int(np.argmax(h2))
        i, j = np.unravel_index(k, h2.shape)
        peak = int(h2[i, j])
        if peak > best[2]:
            # Vote-weighted mean of the offsets in the 2x2 cell block.
            lo_x, hi_x = edges[i], edges[i + 2]
            lo_y, hi_y = edges[j], edges[j + 2]
            inb = sel.copy()
            inb[sel] = (dx[sel] >= lo_x) & (dx[sel] < hi_x) & (dy[sel] >= lo_y) & (dy[sel] < hi_y)
            off = np.array([np.mean(dx[inb]), np.mean(dy[inb])])
            noise = float(sel.sum()) * 4.0 / (nb * nb)
            best = (float(rot), off, peak, noise, n_cells)
    return best


@dataclass(frozen=True)
class CoarseMatch:
    """Result of the rotation/offset vote.

    Attributes:
        rotation_deg: rotation of the sources about the CCD centre relative to the guess, deg.
        offset_px: (2,) vote-weighted offset (dx, dy) of the best cell, pixels.
        peak: votes in the best 2x2 cell block.
        noise: mean votes per 2x2 block.
        threshold: votes needed for a false-alarm probability below 1e-4 over all the
            (rotation, offset) cells searched (Poisson counts), at least ``min_matches``.
        bin_px: size of the offset histogram's cells, pixels.
    """

    rotation_deg: float
    offset_px: np.ndarray
    peak: int
    noise: float
    threshold: float
    bin_px: float

    @property
    def significant(self) -> bool:
        """The peak reaches the threshold."""
        return not (self.peak < self.threshold)


def coarse_match(src: Sources, proj: ProjectedReference, frame: SearchFrame, config) -> CoarseMatch:
    """Vote for the rotation and offset with the ``max_sources`` brightest usable sources and
    the brightest reference stars in proportion to the padded area (``config``: an
    ``AstrometryConfig``)."""
    src_idx, ref_idx = src.usable, proj.in_area
    nx, ny, pad, scale = frame.nx, frame.ny, frame.pad, frame.scale
    n_s = min(len(src_idx), config.max_sources)
    area_ratio = (nx + 2 * pad) * (ny + 2 * pad) / float(nx * ny)
    n_r = min(len(ref_idx), int(math.ceil(1.5 * n_s * area_ratio)))
    s_xy = np.column_stack([src.x[src_idx[:n_s]], src.y[src_idx[:n_s]]])
    r_xy = np.column_stack([proj.x[ref_idx[:n_r]], proj.y[ref_idx[:n_r]]])
    bin_px = max(2.0, 2.0 * config.match_radius_arcsec / scale, 4.0 / scale)
    rot, off, peak, noise, n_cells = _offset_vote(
        s_xy, r_xy, frame.center, frame.max_offset_px, config.max_rotation_deg, bin_px
    )
    # Chance peaks: Poisson counts over every (rotation, offset) cell searched; require a
    # false-alarm probability below 1e-4 for the whole search.
    threshold = max(
        float(config.min_matches), float(poisson.isf(1e-4 / n_cells, max(noise, 1e-3))) + 1
    )
    return CoarseMatch(rot, off, peak, noise, threshold, bin_px)


@dataclass(frozen=True)
class RefinedMatch:
    """Result of the iterative matching.

    Attributes:
        source: int64 matched sources, positions in ``Sources.usable``.
        reference: int64 matched reference stars, positions in ``ProjectedReference.in_area``.
        affine: (3, 2) map from source pixels to guess pixels (``[x, y, 1] @ affine``).
    """

    source: np.ndarray
    reference: np.ndarray
    affine: np.ndarray

    def rotation_deg(self) -> float:
        """Rotation of the sources relative to the guess, deg, from the affine map."""
        aff = self.affine
        return math.degrees(math.atan2(aff[0, 1] - aff[1, 0], aff[0, 0] + aff[1, 1]))

    def offset_px(self, center: np.ndarray) -> np.ndarray:
        """(2,) shift of the CCD centre ``center`` relative to the guess, pixels."""
        aff = self.affine
        return center @ aff[:2] + aff[2] - center


def refine_match(
    src: Sources, proj: ProjectedReference, coarse: CoarseMatch, frame: SearchFrame, config
) -> RefinedMatch:
    """Match all usable sources one-to-one to the reference stars through an affine map that
    starts at the coarse rotation/offset and is refitted on the matches, the match radius
    shrinking from 1.5 vote cells to ``max(1, 3 match_radius)`` pixels (at most 8 rounds)."""
    center, scale = frame.center, frame.scale
    c, s = math.cos(math.radians(coarse.rotation_deg)), math.sin(math.radians(coarse.rotation_deg))
    rmat = np.array([[c, s], [-s, c]])  # row-vector convention: p @ rmat rotates by +rot
    t = -center @ rmat + center + coarse.offset_px
    aff = np.vstack([rmat, t])
    all_src = np.column_stack([src.x[src.usable], src.y[src.usable]])
    ref_pts = np.column_stack([proj.x[proj.in_area], proj.y[proj.in_area]])
    tree = cKDTree(ref_pts)
    radius = 1.5 * coarse.bin_px
    final_px = max(1.0, 3.0 * config.match_radius_arcsec / scale)
    qi = ti = np.zeros(0, dtype=np.int64)
    for _ in range(8):
        qi, ti, _d = unique_nearest(tree, apply_affine(aff, all_src), radius)
        if len(qi) < max(3, config.min_matches // 2):
            break
        aff = fit_affine(all_src[qi], ref_pts[ti])
        if radius <= final_px:
            break
        radius = max(final_px, radius * 0.6)
    return RefinedMatch(source=qi, reference=ti, affine=aff)
