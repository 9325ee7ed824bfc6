"""Detection-to-object association (Pan-STARRS DVO, seed 004 sections 2.4-2.5): detections of
all epochs grouped into objects by position, with per-object mean positions and per-band mean
magnitudes. Pure numpy / scipy; no database.

Method: detections closer than the match radius are linked (friends of friends on a k-d tree,
scipy ``cKDTree.query_pairs`` + connected components), which for isolated objects is DVO's
"closest object within the match radius, else a new object" and, unlike DVO's sequential
loading, does not depend on the order the nights arrive in. A group holding two detections of
the same image (two objects closer than the radius, both detected) is split: the image with most
detections in the group seeds one object per detection and every detection joins the nearest
seed. Positions are in a local tangent plane (arcsec), so a partition must be small (HEALPix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


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
    pairs = cKDTree(xy).query_pairs(radius_arcsec, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    label = _split_same_image(label, image, xy)
    return _ordered(label, ra, dec)


def _tangent_arcsec(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """(n, 2) gnomonic coordinates (arcsec) about the mean position."""
    ra0 = math.degrees(math.atan2(np.sin(np.radians(ra)).mean(), np.cos(np.radians(ra)).mean()))
    dec0 = float(np.mean(dec))
    a, d = np.radians(ra - ra0), np.radians(dec)
    d0 = math.radians(dec0)
    cosc = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a)
    x = np.cos(d) * np.sin(a) / cosc
    y = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a)) / cosc
    return np.degrees(np.column_stack([x, y])) * 3600.0


def _split_same_image(label: np.ndarray, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Split groups holding more than one detection of an image (module doc)."""
    order = np.lexsort((image, label))
    lab, img = label[order], image[order]
    dup = (lab[1:] == lab[:-1]) & (img[1:] == img[:-1])
    if not dup.any():
        return label
    label = label.copy()
    next_label = int(label.max()) + 1
    for g in np.unique(lab[1:][dup]):
        members = np.flatnonzero(label == g)
        imgs, counts = np.unique(image[members], return_counts=True)
        seed_img = imgs[np.lexsort((imgs, -counts))[0]]
        seeds = members[image[members] == seed_img]
        dist, nearest = cKDTree(xy[seeds]).query(xy[members])
        new = np.array([g] + list(range(next_label, next_label + len(seeds) - 1)))
        next_label += len(seeds) - 1
        label[members] = new[nearest]
    return label


def _ordered(label: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> Association:
    """Relabel objects in order of mean (dec, ra) and compute the means."""
    uniq, inv = np.unique(label, return_inverse=True)
    m = len(uniq)
    cnt = np.bincount(inv, minlength=m)
    mdec = np.bincount(inv, weights=dec, minlength=m) / cnt
    # mean RA through unit vectors (safe across 0/360)
    sx = np.bincount(inv, weights=np.cos(np.radians(ra)), minlength=m)
    sy = np.bincount(inv, weights=np.sin(np.radians(ra)), minlength=m)
    mra = np.degrees(np.arctan2(sy, sx)) % 360.0
    rank = np.empty(m, np.int64)
    rank[np.lexsort((mra, mdec))] = np.arange(m)
    return Association(rank[inv], m, mra[np.argsort(rank)], mdec[np.argsort(rank)])


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
