"""HEALPix (nested) spatial index used on every table with positions.

Cone and region queries become B-tree range scans on the integer column on any engine
(CEFCA's choice, seed 001). Order 16 (nside 65536) gives cells of ~3.2 arcsec.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from astropy import units as u
from astropy_healpix import HEALPix

HEALPIX_ORDER = 16
_HP = HEALPix(nside=2**HEALPIX_ORDER, order="nested")

try:  # the C routine behind HEALPix.cone_search_lonlat, in plain degrees: a cone search is
    # run per TAP query, and building the Quantity arguments took longer than the search
    from astropy_healpix._core import healpix_cone_search as _cone_search_deg
except ImportError:  # pragma: no cover  (a future astropy_healpix without it)

    def _cone_search_deg(lon: float, lat: float, radius: float, nside: int, order: str):
        return HEALPix(nside=nside, order=order).cone_search_lonlat(
            lon * u.deg, lat * u.deg, radius=radius * u.deg
        )


@lru_cache(maxsize=1024)
def _coarse_order(radius_deg: float) -> int:
    """HEALPix order whose cells are about the size of ``radius_deg`` (58.6 deg at order 0)."""
    return int(np.clip(np.floor(np.log2(58.6 / max(radius_deg, 1e-6))), 0, HEALPIX_ORDER))


def healpix_index(ra_deg: np.ndarray | float, dec_deg: np.ndarray | float) -> np.ndarray:
    """Nested HEALPix index at :data:`HEALPIX_ORDER` of positions in degrees (ICRS)."""
    return np.asarray(
        _HP.lonlat_to_healpix(np.asarray(ra_deg) * u.deg, np.asarray(dec_deg) * u.deg),
        dtype=np.int64,
    )


def cone_ranges(ra_deg: float, dec_deg: float, radius_deg: float) -> list[tuple[int, int]]:
    """Inclusive ``(lo, hi)`` index ranges at :data:`HEALPIX_ORDER` covering a cone.

    The cone is covered at a coarser order (cells about the radius size) and each coarse cell is
    expanded to its range of fine indices, so the list stays short; callers still apply the
    exact angular-distance cut.
    """
    coarse_order = _coarse_order(float(radius_deg))
    cells = np.sort(
        _cone_search_deg(
            float(ra_deg), float(dec_deg), float(radius_deg), 2**coarse_order, "nested"
        )
    )
    shift = 2 * (HEALPIX_ORDER - coarse_order)
    ranges: list[tuple[int, int]] = []
    for cell in cells.tolist():
        lo, hi = cell << shift, ((cell + 1) << shift) - 1
        if ranges and ranges[-1][1] + 1 == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return ranges
