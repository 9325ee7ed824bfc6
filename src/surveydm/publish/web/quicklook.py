"""Quick-look images of reduced exposures (seed 000 section 7.2; seed 004 section 3.3-3.4: the
IPP chip stage writes binned chip images and the camera stage merges them into one picture of the
focal plane for the process monitor).

Reads the reduced CCD FITS files of the archive read-only (memory-mapped), bins them by block
means, and stretches each CCD on its own with the IRAF zscale interval and an asinh stretch
(``astropy.visualization``; CCDs behind different narrow-band filters have very different sky
levels). The focal-plane mosaic places each binned CCD at the tangent-plane offset of its centre
computed from its WCS (a flip per axis keeps sky orientation; rotation other than flips is
ignored, which is fine for a quick look); without a celestial WCS on every CCD the CCDs are laid
out on a grid by CCD number.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.visualization import AsinhStretch, ZScaleInterval
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from matplotlib.image import imsave

from surveydm.errors import SurveydmError

#: Allowed binning factors.
MAX_BIN = 64


class QuickLookError(SurveydmError):
    """A reduced file cannot be read or binned."""


@dataclass
class CcdFile:
    """A reduced CCD file for the quick look: CCD number and absolute path (already checked to
    lie inside the archive)."""

    ccd_num: int
    path: Path


def read_ccd(path: Path) -> tuple[np.ndarray, fits.Header]:
    """First image HDU of ``path`` as native-endian float32 ``(ny, nx)`` and its header.

    Raises:
        QuickLookError: not a FITS file or no 2-D image in it.
    """
    try:
        with fits.open(path, mode="readonly", memmap=True, lazy_load_hdus=True) as hdul:
            for hdu in hdul:
                if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
                    return np.array(hdu.data, dtype=np.float32), hdu.header.copy()
    except (OSError, ValueError) as exc:
        raise QuickLookError(f"cannot read {path.name}: {exc}") from None
    raise QuickLookError(f"{path.name} holds no 2-D image")


def bin_image(data: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean binning of ``data`` ``(ny, nx)`` by ``factor`` (edges not filling a block are
    dropped; NaNs ignored). Returns ``(ny // factor, nx // factor)`` float32.

    Raises:
        QuickLookError: ``factor`` outside 1..:data:`MAX_BIN` or larger than the image.
    """
    if not 1 <= factor <= MAX_BIN:
        raise QuickLookError(f"binning factor must be 1..{MAX_BIN}, not {factor}")
    ny, nx = data.shape[0] // factor, data.shape[1] // factor
    if ny == 0 or nx == 0:
        raise QuickLookError(f"binning factor {factor} is larger than the image {data.shape}")
    block = data[: ny * factor, : nx * factor].reshape(ny, factor, nx, factor)
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(block, axis=(1, 3)).astype(np.float32)


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


def stretch(image: np.ndarray) -> np.ndarray:
    """Map ``image`` to 0..1 with the zscale interval then an asinh stretch (NaN -> 0)."""
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros_like(image, dtype=np.float32)
    vmin, vmax = ZScaleInterval().get_limits(image[finite])
    if not vmax > vmin:
        vmax = vmin + 1.0
    scaled = np.clip((np.where(finite, image, vmin) - vmin) / (vmax - vmin), 0, 1)
    # in float64: float32 rounding makes the top of the stretch 0.99999994, not 1
    return np.asarray(AsinhStretch(a=0.1)(scaled.astype(np.float64)), dtype=np.float32)


def to_png(image01: np.ndarray) -> bytes:
    """PNG bytes of a 0..1 image, origin at the bottom (FITS convention), grey scale."""
    buf = io.BytesIO()
    imsave(buf, image01, cmap="gray", vmin=0.0, vmax=1.0, origin="lower", format="png")
    return buf.getvalue()


def auto_factor(shape: tuple[int, int], n_across: int, target_px: int) -> int:
    """Binning factor so that ``n_across`` images of ``shape`` span about ``target_px``."""
    return int(min(MAX_BIN, max(1, math.ceil(n_across * max(shape) / target_px))))


def ccd_png(path: Path, factor: int | None = None) -> bytes:
    """Quick-look PNG of one reduced CCD binned by ``factor`` (default: about 500 pixels wide).

    Raises:
        QuickLookError: unreadable file or bad binning factor.
    """
    data, _ = read_ccd(path)
    factor = factor or auto_factor(data.shape, 1, 500)
    return to_png(stretch(bin_image(data, factor)))


def _orient(data: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Turn ``data`` (rows = pixel y, columns = pixel x) so that columns run west (east to the
    left, as on the sky) and rows run north, given ``m``: the display direction (west, north)
    of a step along pixel x (column 0) and pixel y (column 1). Only the 8 rotations and flips
    by multiples of 90 degrees are applied (the nearest one)."""
    if abs(m[0, 0]) + abs(m[1, 1]) >= abs(m[0, 1]) + abs(m[1, 0]):
        out = data
        sx, sy = m[0, 0], m[1, 1]  # pixel x -> display x, pixel y -> display y
    else:
        out = data.T  # rows now follow pixel x, columns pixel y
        sx, sy = m[0, 1], m[1, 0]  # pixel y -> display x, pixel x -> display y
    if sx < 0:
        out = out[:, ::-1]
    if sy < 0:
        out = out[::-1, :]
    return out


def _sky_placement(
    items: Sequence[tuple[np.ndarray, fits.Header, tuple[int, int]]], factor: int
) -> list[tuple[np.ndarray, float, float]] | None:
    """(oriented binned image, x centre, y centre) in binned pixels of a common tangent plane
    (x west, y north), or None when a CCD has no celestial WCS. ``items`` hold the binned image,
    the FITS header and the unbinned shape (the WCS refers to unbinned pixels)."""
    centres, scales, axes = [], [], []
    for _, header, (ny, nx) in items:
        try:
            w = WCS(header).celestial
        except Exception:  # noqa: BLE001 (any WCS parsing problem means: no placement)
            return None
        if not w.has_celestial:
            return None
        cx, cy = (nx - 1) / 2, (ny - 1) / 2
        ra, dec = w.all_pix2world([[cx, cy], [cx + 10, cy], [cx, cy + 10]], 0).T
        centres.append((ra[0], dec[0]))
        scales.append(float(np.mean(proj_plane_pixel_scales(w))) * 3600 * factor)
        cosd = math.cos(math.radians(dec[0]))
        west = [-((r - ra[0] + 180) % 360 - 180) * cosd for r in ra[1:]]
        north = [d - dec[0] for d in dec[1:]]
        axes.append(np.array([west, north]))  # columns: pixel x step, pixel y step
    ra0 = math.degrees(
        math.atan2(
            np.mean([math.sin(math.radians(r)) for r, _ in centres]),
            np.mean([math.cos(math.radians(r)) for r, _ in centres]),
        )
    )
    dec0 = float(np.mean([d for _, d in centres]))
    scale = float(np.median(scales))  # arcsec per binned pixel
    placed = []
    for (binned, _, _), (ra, dec), m in zip(items, centres, axes, strict=True):
        dra = ((ra - ra0 + 180) % 360 - 180) * math.cos(math.radians(dec0)) * 3600
        ddec = (dec - dec0) * 3600
        placed.append((_orient(binned, m), -dra / scale, ddec / scale))
    return placed


def mosaic_png(ccds: Sequence[CcdFile], factor: int | None = None) -> bytes:
    """Binned focal-plane image of one exposure from its reduced CCD files (PNG bytes);
    ``factor`` defaults to a mosaic about 800 pixels across.

    Raises:
        QuickLookError: no CCD files, unreadable file or bad binning factor.
    """
    if not ccds:
        raise QuickLookError("no reduced CCD files for this exposure")
    raw = [read_ccd(c.path) for c in sorted(ccds, key=lambda c: c.ccd_num)]
    if factor is None:
        factor = auto_factor(raw[0][0].shape, math.ceil(math.sqrt(len(raw))), 800)
    # Each CCD is stretched on its own: CCDs behind different filters (PAUCam's narrow bands)
    # have very different sky levels, and one interval for all would hide most of them.
    items = [(stretch(bin_image(data, factor)), header, data.shape) for data, header in raw]
    centred = _sky_placement(items, factor)
    if centred is None:
        ncol = math.ceil(math.sqrt(len(items)))
        h = max(b.shape[0] for b, _, _ in items)
        w = max(b.shape[1] for b, _, _ in items)
        centred = [
            (b, (i % ncol) * (w + 2), -(i // ncol) * (h + 2)) for i, (b, _, _) in enumerate(items)
        ]
    # Integer lower-left corners from the centres.
    xmin = min(x - b.shape[1] / 2 for b, x, _ in centred)
    ymin = min(y - b.shape[0] / 2 for b, _, y in centred)
    placed = [
        (b, int(round(y - b.shape[0] / 2 - ymin)), int(round(x - b.shape[1] / 2 - xmin)))
        for b, x, y in centred
    ]
    shape = (max(i + b.shape[0] for b, i, _ in placed), max(j + b.shape[1] for b, _, j in placed))
    if shape[0] * shape[1] > 25_000_000:
        raise QuickLookError("mosaic too large at this binning; use a larger factor")
    canvas = np.zeros(shape, np.float32)
    for b, i0, j0 in placed:
        canvas[i0 : i0 + b.shape[0], j0 : j0 + b.shape[1]] = b
    return to_png(canvas.astype(np.float32))
