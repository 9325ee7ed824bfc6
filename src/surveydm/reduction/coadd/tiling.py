"""A sky tiling: a named grid of square tiles on the sky, each a TAN projection with a fixed
pixel scale (seed 002: J-PLUS tiles of 1.4 deg; seed 004 section 3.5: Pan-STARRS skycells).

Tiles are laid out in declination rings of height ``size_deg - overlap_deg``; each ring holds
as many tiles as its circumference at the ring's edge nearest the equator needs, so tiles
overlap by at least ``overlap_deg`` everywhere (the layout of the J-PLUS/J-PAS tilings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.wcs import WCS
from astropy_healpix import HEALPix

#: HEALPix order of a tile's coverage list (nside 256, ~0.23 deg cells).
COVERAGE_ORDER = 8


@dataclass(frozen=True)
class TileSpec:
    """One tile of a tiling.

    Attributes:
        name: ``<tiling>-<ring>-<index>``, e.g. ``mini-003-012``.
        ra, dec: centre, deg (ICRS); size_deg: side, deg; pixel_scale: arcsec/pixel;
        naxis1, naxis2: columns, rows.
    """

    name: str
    ra: float
    dec: float
    size_deg: float
    pixel_scale: float
    naxis1: int
    naxis2: int

    def wcs(self) -> WCS:
        """The tile's TAN WCS: centred on (ra, dec), north up, east left."""
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [self.ra, self.dec]
        w.wcs.crpix = [(self.naxis1 + 1) / 2.0, (self.naxis2 + 1) / 2.0]
        w.wcs.cdelt = [-self.pixel_scale / 3600.0, self.pixel_scale / 3600.0]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.radesys = "ICRS"
        return w

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the tile's images."""
        return (self.naxis2, self.naxis1)

    def corners(self) -> np.ndarray:
        """(4, 2) RA, Dec of the corners, deg."""
        return self.wcs().calc_footprint(axes=(self.naxis1, self.naxis2))

    def coverage(self, order: int = COVERAGE_ORDER) -> list[int]:
        """Nested HEALPix cells at ``order`` that the tile's circumscribed circle touches."""
        hp = HEALPix(nside=2**order, order="nested")
        radius = self.size_deg / math.sqrt(2.0)
        cells = hp.cone_search_lonlat(self.ra * u.deg, self.dec * u.deg, radius=radius * u.deg)
        return sorted(int(c) for c in cells)


def make_tiling(
    name: str,
    *,
    size_deg: float,
    pixel_scale: float,
    overlap_deg: float = 0.0,
    ra_range: tuple[float, float] = (0.0, 360.0),
    dec_range: tuple[float, float] = (-90.0, 90.0),
) -> list[TileSpec]:
    """Tiles whose centres fall in ``ra_range`` x ``dec_range`` (deg).

    Args:
        name: tiling name (prefix of tile names).
        size_deg: tile side, deg (J-PLUS: 1.4); pixel_scale: arcsec/pixel.
        overlap_deg: minimum overlap between neighbours, deg.
        ra_range, dec_range: bounds of the tile centres, deg (RA may wrap: (350, 10)).

    Raises:
        ValueError: a non-positive size or scale, or an overlap not smaller than the size.
    """
    if size_deg <= 0 or pixel_scale <= 0:
        raise ValueError("size_deg and pixel_scale must be positive")
    if not 0 <= overlap_deg < size_deg:
        raise ValueError("overlap_deg must be >= 0 and smaller than size_deg")
    step = size_deg - overlap_deg
    npix = int(math.ceil(size_deg * 3600.0 / pixel_scale))
    n_rings = int(math.ceil(180.0 / step))
    tiles = []
    for ring in range(n_rings + 1):
        dec = -90.0 + ring * 180.0 / n_rings
        if not dec_range[0] <= dec <= dec_range[1]:
            continue
        edge = max(abs(dec) - step / 2, 0.0)
        n_ra = max(1, int(math.ceil(360.0 * math.cos(math.radians(edge)) / step)))
        for k in range(n_ra):
            ra = k * 360.0 / n_ra
            if _in_ra_range(ra, ra_range):
                tiles.append(
                    TileSpec(
                        f"{name}-{ring:03d}-{k:03d}", ra, dec, size_deg, pixel_scale, npix, npix
                    )
                )
    return tiles


def _in_ra_range(ra: float, ra_range: tuple[float, float]) -> bool:
    lo, hi = ra_range
    if hi - lo >= 360.0:
        return True
    lo, hi = lo % 360.0, hi % 360.0
    return lo <= ra <= hi if lo <= hi else (ra >= lo or ra <= hi)
