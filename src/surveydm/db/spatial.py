"""HEALPix (nested) spatial index used on every table with positions.

Cone and region queries become B-tree range scans on the integer column on any engine
(CEFCA's choice, seed 001). Order 16 (nside 65536) gives cells of ~3.2 arcsec.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy_healpix import HEALPix

HEALPIX_ORDER = 16
_HP = HEALPix(nside=2**HEALPIX_ORDER, order="nested")


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
    coarse_order = int(np.clip(np.floor(np.log2(58.6 / max(radius_deg, 1e-6))), 0, HEALPIX_ORDER))
    coarse = HEALPix(nside=2**coarse_order, order="nested")
    cells = np.sort(
        coarse.cone_search_lonlat(ra_deg * u.deg, dec_deg * u.deg, radius=radius_deg * u.deg)
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
