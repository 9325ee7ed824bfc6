"""Satellite trails of one input masked along their whole line (streak masking).

The pixel rejection (:mod:`surveydm.reduction.coadd.combine`) finds a trail wherever it
stands out of the other inputs: everywhere on empty sky, but not on the core of a bright star,
where the trail's excess is small next to the star's flux and to the PSF-mismatch allowance of
the rejection. A trail is a straight line across the whole exposure, so the rejected pieces
found off stars tell where it runs: long thin rejected regions of one input are taken as
pieces of a line, the collinear pieces are fitted together, and the band of the line is
rejected across the input's footprint, star cores included. This is the streak masking of
survey pipelines (DES: Desai et al. 2016, Astronomy and Computing 16, 67, sect. 3.3, Hough
transform on the masked pixels; LSST ``maskStreaks``, kernel Hough transform), with the line
found from the moments of the rejected pieces instead of a Hough transform: the rejection has
already isolated them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Line:
    """A straight line on the tile grid: a point (x0, y0) on it and its unit direction
    (dx, dy), pixels; ``half_width``: pixels either side of it that are masked; ``npix``:
    rejected pixels it was fitted on."""

    x0: float
    y0: float
    dx: float
    dy: float
    half_width: float
    npix: int


def _pieces(mask: np.ndarray, min_length: float, min_aspect: float) -> list[np.ndarray]:
    """(k, 2) (y, x) pixel lists of the connected regions of ``mask`` longer than
    ``min_length`` and ``min_aspect`` times longer than wide (from their second moments:
    length = sqrt(12 lambda_1) of a uniform bar)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    out = []
    for sl_i, sl in enumerate(ndimage.find_objects(labels), start=1):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if max(h, w) < min_length / 1.5:
            continue
        yy, xx = np.nonzero(labels[sl] == sl_i)
        pts = np.c_[yy + sl[0].start, xx + sl[1].start].astype(float)
        lam = np.linalg.eigvalsh(np.cov(pts.T))
        length, width = np.sqrt(12 * max(lam[1], 0)), np.sqrt(12 * max(lam[0], 0))
        if length >= min_length and length >= min_aspect * max(width, 1.0):
            out.append(pts)
    return out


def _fit_line(pts: np.ndarray) -> Line:
    """Total-least-squares line through (y, x) points; half width = the 99th percentile of
    the points' distances from it + 1 pixel (cosmic rays and stars' wings touching the trail's
    rejected pieces do not widen it)."""
    c = pts.mean(axis=0)
    _, vec = np.linalg.eigh(np.cov((pts - c).T))
    dy, dx = vec[:, 1]
    dist = np.abs((pts[:, 1] - c[1]) * dy - (pts[:, 0] - c[0]) * dx)
    return Line(
        float(c[1]),
        float(c[0]),
        float(dx),
        float(dy),
        float(np.percentile(dist, 99)) + 1.0,
        len(pts),
    )


def _merge(pieces: list[np.ndarray], max_offset: float) -> list[np.ndarray]:
    """Groups of pieces lying on one line (each piece's centre within ``max_offset`` pixels of
    the line fitted to the group's first piece, directions within 2 degrees)."""
    groups: list[list[np.ndarray]] = []
    lines: list[Line] = []
    for p in sorted(pieces, key=len, reverse=True):
        c = p.mean(axis=0)
        own = _fit_line(p)
        for g, ln in zip(groups, lines, strict=True):
            off = abs((c[1] - ln.x0) * ln.dy - (c[0] - ln.y0) * ln.dx)
            if off <= max_offset and abs(own.dx * ln.dx + own.dy * ln.dy) >= np.cos(
                np.radians(2.0)
            ):
                g.append(p)
                break
        else:
            groups.append([p])
            lines.append(own)
    return [np.concatenate(g) for g in groups]


def find_trails(
    rejected: np.ndarray, min_length: float = 40.0, min_aspect: float = 8.0
) -> list[Line]:
    """The lines of trails among one input's rejected pixels.

    Args:
        rejected: (ny, nx) bool, the input's rejected pixels.
        min_length: shortest rejected piece taken as part of a trail, pixels (default 40: a
            cosmic ray, even a grazing one, is shorter in a reduced image).
        min_aspect: its least length / width (default 8).

    Returns:
        The fitted lines (empty when there is no trail).
    """
    pieces = _pieces(rejected, min_length, min_aspect)
    return [_fit_line(p) for p in _merge(pieces, max_offset=3.0)]


def line_mask(line: Line, shape: tuple[int, int]) -> np.ndarray:
    """(ny, nx) bool: the pixels within ``line.half_width`` of the line (built row by row:
    no full-tile coordinate arrays)."""
    out = np.zeros(shape, bool)
    ny, nx = shape
    hw = line.half_width
    if abs(line.dy) < 1e-9:  # horizontal line: whole rows
        out[max(int(np.ceil(line.y0 - hw)), 0) : max(int(np.floor(line.y0 + hw)) + 1, 0)] = True
        return out
    for y in range(ny):
        # |(x - x0) dy - (y - y0) dx| <= hw  <=>  x in [a, b]
        c = line.x0 + (y - line.y0) * line.dx / line.dy
        d = hw / abs(line.dy)
        a, b = max(int(np.ceil(c - d)), 0), min(int(np.floor(c + d)), nx - 1)
        if a <= b:
            out[y, a : b + 1] = True
    return out


def mask_trails(
    rejected: np.ndarray,
    valid: np.ndarray,
    min_length: float = 40.0,
    min_aspect: float = 8.0,
) -> int:
    """Extend each input's rejected trail pieces to the whole line, in place.

    Args:
        rejected: (n, ny, nx) bool rejection masks, updated in place.
        valid: (n, ny, nx) bool, the input pixels with data (only those are rejected).
        min_length, min_aspect: :func:`find_trails`.

    Returns:
        The number of trails found.
    """
    found = 0
    for k in range(rejected.shape[0]):
        for line in find_trails(rejected[k], min_length, min_aspect):
            rejected[k] |= line_mask(line, rejected.shape[1:]) & valid[k]
            found += 1
    return found
