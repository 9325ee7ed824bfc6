"""Pixel masks with documented bit codes (seed 002: "a code identifies the issue(s) affecting
each pixel", stored with the reduced image).

A mask is a ``uint16`` array of the CCD's shape; each set bit is one reason the pixel is
unreliable. Bits combine with ``|``: a saturated pixel hit by a cosmic ray is
``MaskBit.SATURATED | MaskBit.COSMIC_RAY`` = 10. A pixel with mask 0 is good.

=============  =====  =====================================================================
bit            value  meaning
=============  =====  =====================================================================
BAD_PIXEL          1  dead / low or high response pixel or column (master flat), unstable pixel
SATURATED          2  raw value >= the amplifier's saturation level
BLEED              4  charge bled along the column from saturated pixels
COSMIC_RAY         8  cosmic-ray hit (:mod:`surveydm.reduction.cosmics`)
EDGE              16  within ``edge_width`` pixels of the CCD border
HOT               32  hot pixel or column (the night's darks: ``reduction.bad_pixel_mask``)
NO_DATA           64  no calibration available (flat not positive, combine had no frames)
SATELLITE        128  satellite trail (:mod:`surveydm.reduction.satellites`)
=============  =====  =====================================================================
"""

from __future__ import annotations

from enum import IntFlag

import numpy as np
from scipy import ndimage

MASK_DTYPE = np.uint16


class MaskBit(IntFlag):
    """Bit codes of the pixel mask (values are stable: they are written into FITS files)."""

    BAD_PIXEL = 1
    SATURATED = 2
    BLEED = 4
    COSMIC_RAY = 8
    EDGE = 16
    HOT = 32
    NO_DATA = 64
    SATELLITE = 128


def describe_mask_bits() -> dict[str, int]:
    """``{name: value}`` of every mask bit, for FITS headers (``MASK_<NAME> = value``)."""
    return {b.name: int(b.value) for b in MaskBit if b.name is not None}


def bad_pixels_from_flat(flat: np.ndarray, *, low: float = 0.5, high: float = 1.5) -> np.ndarray:
    """Bad pixels of a master flat normalised to 1.

    Args:
        flat: (ny, nx) master flat, median 1 over good pixels.
        low, high: relative response outside [low, high] is bad (dead, low-QE or hot columns).

    Returns:
        (ny, nx) bool, True where the response is out of range or not finite.
    """
    flat = np.asarray(flat)
    with np.errstate(invalid="ignore"):
        return ~((flat >= low) & (flat <= high))


def bleed_trails(
    saturated: np.ndarray,
    *,
    image: np.ndarray | None = None,
    threshold: float | None = None,
    grow: int = 2,
) -> np.ndarray:
    """Bleed trails of saturated stars: saturated pixels grown along columns.

    Charge overflowing a full well spreads along the column (the CCD's parallel-transfer axis,
    numpy axis 0). With ``image`` and ``threshold``, pixels above ``threshold`` that form a
    continuous column run touching a saturated pixel are part of the trail; the trail is then
    grown by ``grow`` pixels up and down the column.

    Args:
        saturated: (ny, nx) bool.
        image: optional (ny, nx) image (e-) to follow trails that fall just below saturation.
        threshold: level (same unit as ``image``) above which a column-connected pixel bleeds.
        grow: pixels added at both ends of every column run.

    Returns:
        (ny, nx) bool bleed mask, not including the saturated pixels themselves.
    """
    saturated = np.asarray(saturated, dtype=bool)
    trail = saturated
    if image is not None and threshold is not None and saturated.any():
        high = np.asarray(image) > threshold
        high |= saturated
        column = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], bool)
        labels, _ = ndimage.label(high, structure=column)
        keep = np.unique(labels[saturated])
        keep = keep[keep > 0]
        trail = np.isin(labels, keep)
    if grow > 0 and trail.any():
        structure = np.ones((2 * grow + 1, 1), bool)
        trail = ndimage.binary_dilation(trail, structure=structure)
    return trail & ~saturated


def edge_mask(shape: tuple[int, int], width: int) -> np.ndarray:
    """(ny, nx) bool, True within ``width`` pixels of the array border."""
    edge = np.zeros(shape, bool)
    if width > 0:
        edge[:width, :] = True
        edge[-width:, :] = True
        edge[:, :width] = True
        edge[:, -width:] = True
    return edge


def build_mask(
    shape: tuple[int, int],
    *,
    bad_pixels: np.ndarray | None = None,
    hot: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    bleed: np.ndarray | None = None,
    cosmic_rays: np.ndarray | None = None,
    no_data: np.ndarray | None = None,
    edge_width: int = 0,
    bleed_grow: int = 2,
    image: np.ndarray | None = None,
    bleed_threshold: float | None = None,
) -> np.ndarray:
    """Combine the per-reason boolean masks into one ``uint16`` bit mask (see :class:`MaskBit`).

    Args:
        shape: (ny, nx) of the CCD.
        bad_pixels: bool, e.g. from :func:`bad_pixels_from_flat`.
        hot: bool, e.g. from :func:`surveydm.reduction.bad_pixel_mask.hot_from_dark`.
        saturated: bool, raw value >= saturation (``AssembledCCD.saturated``).
        bleed: bool bleed trails; when None and ``saturated`` is given, computed with
            :func:`bleed_trails` (``bleed_grow``, ``image``, ``bleed_threshold``).
        cosmic_rays: bool, from :func:`surveydm.reduction.cosmics.find_cosmic_rays`.
        no_data: bool, pixels without calibration (e.g. flat <= 0).
        edge_width: pixels from the border flagged EDGE.

    Returns:
        (ny, nx) uint16 mask.

    Raises:
        ValueError: an input mask does not have ``shape``.
    """
    mask = np.zeros(shape, MASK_DTYPE)
    if saturated is not None and bleed is None:
        bleed = bleed_trails(saturated, image=image, threshold=bleed_threshold, grow=bleed_grow)
    for arr, bit in (
        (bad_pixels, MaskBit.BAD_PIXEL),
        (hot, MaskBit.HOT),
        (saturated, MaskBit.SATURATED),
        (bleed, MaskBit.BLEED),
        (cosmic_rays, MaskBit.COSMIC_RAY),
        (no_data, MaskBit.NO_DATA),
    ):
        if arr is None:
            continue
        arr = np.asarray(arr, dtype=bool)
        if arr.shape != tuple(shape):
            raise ValueError(f"mask for {bit.name} has shape {arr.shape}, expected {shape}")
        mask[arr] |= MASK_DTYPE(bit)
    if edge_width > 0:
        mask[edge_mask(shape, edge_width)] |= MASK_DTYPE(MaskBit.EDGE)
    return mask
