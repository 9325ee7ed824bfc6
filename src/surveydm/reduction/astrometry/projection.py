"""Step 1 of the astrometric solution: the search frame of the CCD and the reference stars
projected onto its pixel grid with the header WCS guess."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from surveydm.reduction.astrometry.catalogs import ReferenceStars, Sources

__all__ = ["ProjectedReference", "SearchFrame", "project_reference", "search_frame"]


@dataclass(frozen=True)
class SearchFrame:
    """The CCD and the pixel area searched for its reference stars.

    Attributes:
        nx, ny: CCD size, pixels.
        scale: mean pixel scale of the guess WCS, arcsec/pixel.
        center: (2,) CCD centre (x, y), 0-based pixels.
        max_offset_px: largest shift of the CCD centre searched (pointing error plus the
            rotation error times the distance of CRPIX from the centre), pixels.
        pad: margin around the CCD in which reference stars are kept, pixels.
    """

    nx: int
    ny: int
    scale: float
    center: np.ndarray
    max_offset_px: float
    pad: float


def search_frame(
    initial_wcs: WCS, image_shape: tuple[int, int] | None, src: Sources, config
) -> SearchFrame:
    """Search frame from the guess WCS, the CCD shape (``image_shape`` (ny, nx), else the WCS
    ``pixel_shape``, else the extent of the sources) and ``config`` (an ``AstrometryConfig``)."""
    x, y = src.x, src.y
    if image_shape is not None:
        ny, nx = int(image_shape[0]), int(image_shape[1])
    elif initial_wcs.pixel_shape is not None:
        nx, ny = (int(v) for v in initial_wcs.pixel_shape)
    else:
        nx = int(np.nanmax(x)) + 1 if len(x) else 1
        ny = int(np.nanmax(y)) + 1 if len(y) else 1
    scale = float(np.mean(proj_plane_pixel_scales(initial_wcs.celestial))) * 3600.0
    crpix = np.asarray(initial_wcs.wcs.crpix, dtype=np.float64) - 1.0
    center = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
    lever = float(np.hypot(*(center - crpix)))
    rot = math.radians(config.max_rotation_deg)
    max_off_px = config.max_offset_arcsec / scale + rot * lever
    pad = max_off_px + rot * float(np.hypot(nx, ny)) / 2 + 5
    return SearchFrame(nx=nx, ny=ny, scale=scale, center=center, max_offset_px=max_off_px, pad=pad)


@dataclass(frozen=True)
class ProjectedReference:
    """Reference stars on the guess's pixel grid.

    Attributes:
        x, y: (m,) positions through the guess WCS, 0-based pixels (NaN where not finite).
        in_area: int64 indices of the stars within the padded CCD, brightest first.
    """

    x: np.ndarray
    y: np.ndarray
    in_area: np.ndarray


def project_reference(
    ref: ReferenceStars, initial_wcs: WCS, frame: SearchFrame
) -> ProjectedReference:
    """Project the reference stars with the guess WCS and keep those near the CCD."""
    ra_ref, dec_ref = ref.ra, ref.dec
    nx, ny, pad = frame.nx, frame.ny, frame.pad
    with np.errstate(invalid="ignore"):
        finite_ref = np.isfinite(ra_ref) & np.isfinite(dec_ref)
        xr = np.full(len(ra_ref), np.nan)
        yr = np.full(len(ra_ref), np.nan)
        if finite_ref.any():
            xr[finite_ref], yr[finite_ref] = initial_wcs.all_world2pix(
                ra_ref[finite_ref], dec_ref[finite_ref], 0, quiet=True
            )
    in_area = finite_ref & (xr > -pad) & (xr < nx - 1 + pad) & (yr > -pad) & (yr < ny - 1 + pad)
    ref_idx = np.nonzero(in_area)[0]
    ref_idx = ref_idx[np.argsort(np.nan_to_num(ref.mag[ref_idx], nan=99.0), kind="stable")]
    return ProjectedReference(x=xr, y=yr, in_area=ref_idx)
