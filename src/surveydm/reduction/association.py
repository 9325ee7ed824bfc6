"""Detection-to-object association (Pan-STARRS DVO, seed 004 sections 2.4-2.5): detections of
all epochs grouped into objects by position, with per-object mean positions and per-band mean
magnitudes. Pure numpy / scipy; no database.

Method: detections closer than the match radius are linked (friends of friends), which for
isolated objects is DVO's "closest object within the match radius, else a new object" and, unlike
DVO's sequential loading, does not depend on the order the nights arrive in. A group holding two
detections of the same image (two objects closer than the radius, both detected) is split: the
image with most detections in the group seeds one object per detection and every detection joins
the nearest seed. Positions are in a local tangent plane (arcsec), so a partition must be small
(HEALPix). The links are found by a compiled (numba) pass over a grid of cells one radius wide,
sorted by cell (each detection is compared with those of its own cell and the four following
neighbour cells) into a union-find forest: ~10^6 detections per second per core
(``benchmarks/bench_forced.py``), against ~10^5 for scipy's k-d tree ``query_pairs`` +
connected components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class Association:
    """Object label of every detection (``label``: (n,) int64 in 0..n_objects-1, numbered in
    order of the objects' mean declination then right ascension, so equal inputs in any order
    give equal labels per detection) and the objects' mean positions (deg)."""

    label: np.ndarray
    n_objects: int
    ra: np.ndarray
    dec: np.ndarray


def associate(
    ra: np.ndarray, dec: np.ndarray, image: np.ndarray, radius_arcsec: float
) -> Association:
    """Associate detections (deg, ICRS) of images ``image`` (n,) into objects (module doc).

    Raises:
        ValueError: arrays of different lengths or a radius not > 0.
    """
    ra, dec, image = np.asarray(ra, float), np.asarray(dec, float), np.asarray(image)
    n = len(ra)
    if not (len(dec) == len(image) == n):
        raise ValueError("ra, dec and image must have the same length")
    if not radius_arcsec > 0:
        raise ValueError(f"the match radius must be > 0 arcsec, got {radius_arcsec}")
    if n == 0:
        empty = np.zeros(0)
        return Association(np.zeros(0, np.int64), 0, empty, empty)
    xy = _tangent_arcsec(ra, dec)
    label = _friends_of_friends(xy, float(radius_arcsec))
    label = _split_same_image(label, image, xy)
    return _ordered(label, ra, dec)


def _friends_of_friends(xy: np.ndarray, radius: float) -> np.ndarray:
    """(n,) int64 group label (the index of a member) of points ``xy`` (n, 2) linked by
    distances <= ``radius`` (same units), through a grid of cells ``radius`` wide."""
    cx = np.floor(xy[:, 0] / radius).astype(np.int64)
    cy = np.floor(xy[:, 1] / radius).astype(np.int64)
    cx -= cx.min()
    cy -= cy.min() - 1  # rows -1 and +1 of every cell stay inside its column's key range
    key = cx * (int(cy.max()) + 2) + cy
    order = np.argsort(key, kind="stable")
    return _fof_kernel(
        np.ascontiguousarray(xy[order, 0]), np.ascontiguousarray(xy[order, 1]), key[order],
        int(cy.max()) + 2, radius, order,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _find(parent, i):  # noqa: ANN001, ANN202
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _fof_kernel(x, y, key, rows, radius, order):  # noqa: ANN001, ANN202
    """Union-find over points sorted by cell ``key`` (= column * ``rows`` + row): each cell's
    points against those of the same cell and the cells (c, r+1), (c+1, r-1..r+1), which
    are two contiguous key ranges. Returns labels in the input order (``order`` maps)."""
    n = x.shape[0]
    parent = np.arange(n)
    r2 = radius * radius
    start = 0
    while start < n:
        k = key[start]
        end = start
        while end < n and key[end] == k:
            end += 1
        up_end = np.searchsorted(key, k + 2)  # this cell and (c, r+1)
        right0 = np.searchsorted(key, k + rows - 1)  # (c+1, r-1) .. (c+1, r+1)
        right1 = np.searchsorted(key, k + rows + 2)
        for i in range(start, end):
            for j in range(i + 1, up_end):
                dx, dy = x[i] - x[j], y[i] - y[j]
                if dx * dx + dy * dy <= r2:
                    a, b = _find(parent, i), _find(parent, j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
            for j in range(right0, right1):
                dx, dy = x[i] - x[j], y[i] - y[j]
                if dx * dx + dy * dy <= r2:
                    a, b = _find(parent, i), _find(parent, j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
        start = end
    label = np.empty(n, np.int64)
    for i in range(n):
        label[order[i]] = order[_find(parent, i)]
    return label


def _tangent_arcsec(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """(n, 2) gnomonic coordinates (arcsec) about the mean position."""
    ra0 = math.atan2(np.sin(np.radians(ra)).mean(), np.cos(np.radians(ra)).mean())
    return _gnomonic_kernel(ra, dec, ra0, math.radians(float(np.mean(dec))))


@njit(cache=True, nogil=True)
def _gnomonic_kernel(ra, dec, ra0, dec0):  # noqa: ANN001, ANN202
    n = ra.shape[0]
    out = np.empty((n, 2))
    s0, c0 = math.sin(dec0), math.cos(dec0)
    k = 3600.0 * 180.0 / math.pi
    for i in range(n):
        a = math.radians(ra[i]) - ra0
        d = math.radians(dec[i])
        sd, cd, ca = math.sin(d), math.cos(d), math.cos(a)
        cosc = s0 * sd + c0 * cd * ca
        out[i, 0] = k * cd * math.sin(a) / cosc
        out[i, 1] = k * (c0 * sd - s0 * cd * ca) / cosc
    return out


def _split_same_image(label: np.ndarray, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Split groups holding more than one detection of an image (module doc)."""
    order = np.argsort(label, kind="stable")
    _, img = np.unique(image, return_inverse=True)
    return _split_kernel(label, img.astype(np.int64), xy, order)


@njit(cache=True, nogil=True)
def _split_kernel(label, image, xy, order):  # noqa: ANN001, ANN202
    """Groups are runs of ``label[order]``; in a group with two detections of one image, the
    image with most detections (the lowest on ties) seeds one object per detection, labelled
    by the seed's index, and every member joins its nearest seed."""
    n = label.shape[0]
    out = label.copy()
    start = 0
    while start < n:
        g = label[order[start]]
        end = start
        while end < n and label[order[end]] == g:
            end += 1
        dup = False
        for p in range(start, end):
            for q in range(p + 1, end):
                if image[order[p]] == image[order[q]]:
                    dup = True
                    break
            if dup:
                break
        if dup:
            best, best_n = -1, 0
            for p in range(start, end):
                m = 0
                for q in range(start, end):
                    if image[order[q]] == image[order[p]]:
                        m += 1
                if m > best_n or (m == best_n and image[order[p]] < best):
                    best, best_n = image[order[p]], m
            for p in range(start, end):
                i = order[p]
                dmin, lab = np.inf, -1
                for q in range(start, end):
                    j = order[q]
                    if image[j] != best:
                        continue
                    d = (xy[i, 0] - xy[j, 0]) ** 2 + (xy[i, 1] - xy[j, 1]) ** 2
                    if d < dmin:
                        dmin, lab = d, j
                out[i] = lab
        start = end
    return out


def _ordered(label: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> Association:
    """Relabel objects in order of mean (dec, ra) and compute the means."""
    inv, m = _compact_kernel(label)
    cnt = np.bincount(inv, minlength=m)
    mdec = np.bincount(inv, weights=dec, minlength=m) / cnt
    # mean RA through unit vectors (safe across 0/360)
    sx = np.bincount(inv, weights=np.cos(np.radians(ra)), minlength=m)
    sy = np.bincount(inv, weights=np.sin(np.radians(ra)), minlength=m)
    mra = np.degrees(np.arctan2(sy, sx)) % 360.0
    by_position = np.lexsort((mra, mdec))
    rank = np.empty(m, np.int64)
    rank[by_position] = np.arange(m)
    return Association(rank[inv], m, mra[by_position], mdec[by_position])


@njit(cache=True, nogil=True)
def _compact_kernel(label):  # noqa: ANN001, ANN202
    """Labels in 0..n-1 renumbered 0..m-1 in order of first appearance, and m."""
    n = label.shape[0]
    new = np.full(n, -1, np.int64)
    out = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        g = label[i]
        if new[g] < 0:
            new[g] = m
            m += 1
        out[i] = new[g]
    return out, m


@dataclass(frozen=True)
class BandMeans:
    """Per object and band (arrays of length k): ``obj`` label, ``band`` name, ``n``
    measurements, weighted mean ``mag`` and its error ``mag_error`` (AB)."""

    obj: np.ndarray
    band: np.ndarray
    n: np.ndarray
    mag: np.ndarray
    mag_error: np.ndarray


def band_means(
    label: np.ndarray, band: np.ndarray, mag: np.ndarray, mag_error: np.ndarray
) -> BandMeans:
    """Inverse-variance weighted mean magnitude per (object, band) (DVO SecFilt); measurements
    without a finite magnitude count in ``n`` but not in the mean (NaN when none has one)."""
    band = np.asarray(band).astype(str)
    names, bidx = np.unique(band, return_inverse=True)
    key = np.asarray(label, np.int64) * len(names) + bidx
    uniq, inv = np.unique(key, return_inverse=True)
    mag, err = np.asarray(mag, float), np.asarray(mag_error, float)
    ok = np.isfinite(mag) & np.isfinite(err) & (err > 0)
    w = np.where(ok, 1.0 / np.where(ok, err, 1.0) ** 2, 0.0)
    sw = np.bincount(inv, weights=w, minlength=len(uniq))
    swm = np.bincount(inv, weights=w * np.where(ok, mag, 0.0), minlength=len(uniq))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sw > 0, swm / sw, np.nan)
        merr = np.where(sw > 0, 1 / np.sqrt(sw), np.nan)
    return BandMeans(
        uniq // len(names), names[uniq % len(names)],
        np.bincount(inv, minlength=len(uniq)), mean, merr,
    )  # fmt: skip
