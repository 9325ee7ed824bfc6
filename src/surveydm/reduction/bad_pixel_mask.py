"""Bad-pixel masks compiled from a night's calibration frames (seed 002: "Compile Bad Pixel
Masks" in the daily pipeline, mask codes stored with the reduced image).

A bad-pixel mask is a ``uint16`` :class:`~surveydm.reduction.masks.MaskBit` image of one CCD:

* ``HOT`` -- hot pixels and hot column segments: dark current far above the CCD's, measured
  on closed-shutter darks (``dark`` / ``test`` exposures) minus the master bias, in e-/s;
* ``BAD_PIXEL`` -- dead or low/high-response pixels and column segments of the master flats,
  and unstable pixels (scatter across the darks far above the noise).

Columns are found on a running median along the column (the parallel-transfer axis, numpy
axis 0): a defect too faint to show in one pixel adds up along a column segment. With one
dark, cosmic-ray tracks in it (connected groups of hot pixels spanning more than one column)
are not taken for hot pixels; with two, the per-pixel minimum rate is used, with three or more
the median. Pure functions on arrays; the nightly ``bad_pixel_mask`` task
(:mod:`surveydm.pipelines.nightly.bad_pixels`) reads the frames and records the mask as a
calibration frame with a validity range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage

from surveydm.reduction.masks import MASK_DTYPE, MaskBit, bad_pixels_from_flat

__all__ = [
    "BadPixelConfig",
    "BadPixelMask",
    "bad_pixel_mask",
    "column_defects",
    "dark_rate",
    "hot_from_dark",
    "unstable_pixels",
]

#: Subsampling step of the robust level and noise estimates.
_STEP = 2
#: Box (pixels) of the local level and noise maps (amplifiers differ in read noise).
_BOX = 64
#: Standard deviation of the median of n Gaussian values, in units of one value's, times sqrt(n).
_MEDIAN_EFFICIENCY = 1.2533


class BadPixelError(ValueError):
    """The frames given cannot make a bad-pixel mask (no frame, wrong shapes, bad times)."""


@dataclass(frozen=True)
class BadPixelConfig:
    """Thresholds of :func:`bad_pixel_mask`.

    Attributes:
        hot_nsigma: a pixel is hot above the dark's robust level plus this many robust sigma.
        hot_min_rate: ... and at least this dark-current excess, e-/s.
        column_window: pixels of the running median along columns.
        column_nsigma: a column segment is defective above this many sigma of the running
            median (the pixel noise / sqrt(window), Gaussian median efficiency).
        column_min_length: shortest defective column segment, pixels.
        flat_low, flat_high: master-flat response outside [low, high] is BAD_PIXEL.
        flat_column_deviation: a flat column segment deviating by more than this fraction from
            its neighbours (and ``column_nsigma``) is BAD_PIXEL.
        unstable_nsigma: a pixel whose scatter across the darks (largest value left out: a
            cosmic ray) exceeds this many times the frames' noise is unstable.
        unstable_min_frames: fewest darks for the unstable-pixel test.
    """

    hot_nsigma: float = 5.0
    hot_min_rate: float = 0.1
    column_window: int = 15
    column_nsigma: float = 5.0
    column_min_length: int = 20
    flat_low: float = 0.5
    flat_high: float = 1.5
    flat_column_deviation: float = 0.05
    unstable_nsigma: float = 4.0
    unstable_min_frames: int = 5


@dataclass
class BadPixelMask:
    """A CCD's bad-pixel mask and what went into it.

    Attributes:
        mask: (ny, nx) uint16, ``MaskBit.HOT`` and ``MaskBit.BAD_PIXEL`` codes.
        hot, hot_columns, dead, dead_columns, unstable: (ny, nx) bool, each reason alone
            (``dead`` and ``dead_columns`` include high-response pixels and columns; a
            flickering pixel may be both hot and unstable).
        stats: figures for QC and the calibration frame: ``n_hot``, ``n_hot_column_pixels``,
            ``n_dead``, ``n_dead_column_pixels``, ``n_unstable``, ``bad_fraction``,
            ``n_darks``, ``n_flats``, ``dark_level`` (e-/s), ``dark_noise`` (e-/s).
    """

    mask: np.ndarray
    hot: np.ndarray
    hot_columns: np.ndarray
    dead: np.ndarray
    dead_columns: np.ndarray
    unstable: np.ndarray
    stats: dict[str, float] = field(default_factory=dict)


def dark_rate(
    darks: Sequence[np.ndarray], exptimes: Sequence[float], bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Dark current per pixel (e-/s), robust to cosmic rays: ``(dark - bias) / exptime``
    combined over frames by the median (3 or more), the minimum (2) or as it is (1).

    Args:
        darks: (ny, nx) assembled closed-shutter frames, e- (overscan subtracted, gain applied).
        exptimes: s, one per frame, positive.
        bias: (ny, nx) master bias, e-, or None.

    Returns:
        (n, ny, nx) float32 per-frame rates stacked, and (ny, nx) the combined rate, as
        ``(stack, combined)``.

    Raises:
        BadPixelError: no frame, a non-positive exposure time, or mismatched shapes.
    """
    stack = _rate_stack(darks, exptimes, bias)
    if len(stack) >= 3:
        combined = np.median(stack, axis=0)
    elif len(stack) == 2:
        combined = stack.min(axis=0)
    else:
        combined = stack[0]
    return stack, combined.astype(np.float32)


def _rate_stack(
    darks: Sequence[np.ndarray], exptimes: Sequence[float], bias: np.ndarray | None
) -> np.ndarray:
    if len(darks) == 0:
        raise BadPixelError("no dark frame given")
    if len(exptimes) != len(darks) or any(not (t > 0) for t in exptimes):
        raise BadPixelError(f"need one positive exposure time per dark, got {list(exptimes)}")
    shape = np.shape(darks[0])
    for arr in [*darks, *([] if bias is None else [bias])]:
        if np.shape(arr) != shape:
            raise BadPixelError(f"frame shape {np.shape(arr)} differs from {shape}")
    stack = np.empty((len(darks), *shape), np.float32)
    for i, (d, t) in enumerate(zip(darks, exptimes, strict=True)):
        stack[i] = d
        if bias is not None:
            stack[i] -= bias
        stack[i] /= np.float32(t)
    return stack


def _level_noise(image: np.ndarray) -> tuple[float, float]:
    """Robust (median, MAD sigma) of the finite pixels of a subsample."""
    sub = image[::_STEP, ::_STEP]
    sub = sub[np.isfinite(sub)]
    if sub.size == 0:
        return 0.0, 1.0
    return float(np.median(sub)), max(float(mad_std(sub)), 1e-12)


def _local_level_noise(image: np.ndarray, box: int = _BOX) -> tuple[np.ndarray, np.ndarray]:
    """(ny, nx) robust level (median) and sigma (MAD, at least 70 % of the median cell's) maps
    of ``image`` in ``box`` x ``box`` cells: amplifiers of one CCD differ in read noise, so
    one sigma does not fit all."""
    ny, nx = image.shape
    py, px = -ny % box, -nx % box
    padded = np.pad(image.astype(np.float32), ((0, py), (0, px)), constant_values=np.nan)
    cells = padded.reshape((ny + py) // box, box, (nx + px) // box, box).swapaxes(1, 2)
    cells = cells.reshape(cells.shape[0], cells.shape[1], -1)
    level = np.nanmedian(cells, axis=2)
    noise = 1.4826 * np.nanmedian(np.abs(cells - level[..., None]), axis=2)
    # a cell's MAD can fall on a digitisation step (ADU quantised): no cell below 70 % of
    # the typical one (amplifiers of a CCD differ by less in read noise)
    noise = np.maximum(noise, max(0.7 * float(np.nanmedian(noise)), 1e-12))
    expand = np.ones((box, box), np.float32)
    return (np.kron(level, expand)[:ny, :nx], np.kron(noise, expand)[:ny, :nx])


def hot_from_dark(
    rate: np.ndarray, *, n_frames: int, config: BadPixelConfig = BadPixelConfig()
) -> np.ndarray:
    """Hot pixels of a combined dark rate (e-/s): above the local robust level by
    ``hot_nsigma`` local robust sigma (64-pixel cells) and ``hot_min_rate``. With
    ``n_frames == 1`` the connected groups (8-way) of hot pixels that span more than one
    column are cosmic-ray tracks and are dropped.

    Returns:
        (ny, nx) bool.
    """
    level, noise = _local_level_noise(rate)
    excess = rate - level
    with np.errstate(invalid="ignore"):
        hot = (excess > config.hot_nsigma * noise) & (excess > config.hot_min_rate)
    if n_frames == 1 and hot.any():
        labels, n = ndimage.label(hot, structure=np.ones((3, 3), bool))
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is not None and sl[1].stop - sl[1].start > 1:
                hot[sl][labels[sl] == i] = False
    return hot


def column_defects(
    significance: np.ndarray,
    *,
    window: int = 15,
    nsigma: float = 5.0,
    min_length: int = 20,
    threshold: float = 0.0,
    two_sided: bool = False,
) -> np.ndarray:
    """Column segments whose running median (``window`` pixels along axis 0) of
    ``significance`` (per-pixel deviation in units of the pixel noise) exceeds ``nsigma``
    standard deviations of such a median, over runs of at least ``min_length`` pixels.

    Args:
        significance: (ny, nx) deviation / pixel sigma, signed: positive deviations count, and
            negative ones too with ``two_sided``.
        threshold: the running median must also exceed this (same units).

    Returns:
        (ny, nx) bool.
    """
    med = ndimage.median_filter(significance, size=(window, 1), mode="nearest")
    limit = max(nsigma * _MEDIAN_EFFICIENCY / np.sqrt(window), threshold)
    high = (np.abs(med) if two_sided else med) > limit
    if not high.any():
        return high
    labels, _ = ndimage.label(high, structure=np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], bool))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_length
    keep[0] = False
    return keep[labels]


def unstable_pixels(
    stack: np.ndarray,
    combined: np.ndarray,
    exptime: float,
    *,
    nsigma: float = 4.0,
    min_frames: int = 5,
) -> np.ndarray:
    """Pixels whose scatter across frames, after leaving out each pixel's largest value (a
    cosmic ray), exceeds ``nsigma`` times the expected scatter: the typical one (read noise)
    with the pixel's own dark-current Poisson noise added (random telegraph / flickering
    pixels); none with fewer than ``min_frames`` frames.

    Args:
        stack: (n, ny, nx) per-frame rates, e-/s; combined: (ny, nx) their combination.
        exptime: typical exposure time of the frames, s (for the Poisson term).

    Returns:
        (ny, nx) bool.
    """
    if len(stack) < min_frames:
        return np.zeros(combined.shape, bool)
    kept = np.sort(stack, axis=0)[:-1]
    spread = kept.std(axis=0, ddof=1)
    typical = max(float(np.median(spread[::_STEP, ::_STEP])), 1e-12)
    expected = np.sqrt(typical**2 + np.maximum(combined, 0.0) / exptime)
    return spread > nsigma * expected


def _flat_defects(
    flats: Sequence[np.ndarray], config: BadPixelConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(dead-or-hot-response pixels, defective column segments) over the master flats."""
    shape = np.shape(flats[0])
    dead = np.zeros(shape, bool)
    columns = np.zeros(shape, bool)
    for flat in flats:
        flat = np.asarray(flat, np.float32)
        bad = bad_pixels_from_flat(flat, low=config.flat_low, high=config.flat_high)
        dead |= bad
        # deviation from the neighbouring columns (illumination removed), in pixel sigma
        local = ndimage.median_filter(np.where(bad, 1.0, flat), size=(1, 9), mode="nearest")
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.where(bad | ~(local > 0), 0.0, flat / local - 1.0).astype(np.float32)
        _, noise = _level_noise(dev)
        sig = dev / np.float32(noise)
        thr = config.flat_column_deviation / noise
        columns |= column_defects(
            sig,
            window=config.column_window,
            nsigma=config.column_nsigma,
            min_length=config.column_min_length,
            threshold=thr,
            two_sided=True,
        )
    return dead, columns & ~dead


def bad_pixel_mask(
    darks: Sequence[np.ndarray],
    exptimes: Sequence[float],
    *,
    bias: np.ndarray | None = None,
    flats: Sequence[np.ndarray] = (),
    config: BadPixelConfig = BadPixelConfig(),
) -> BadPixelMask:
    """The bad-pixel mask of one CCD from the night's darks and master flats (see module doc).

    Args:
        darks: (ny, nx) assembled closed-shutter frames (e-); may be empty when ``flats`` are
            given (then no hot or unstable pixels are found).
        exptimes: their exposure times, s.
        bias: (ny, nx) master bias (e-) subtracted from the darks, or None.
        flats: (ny, nx) master flats normalised to 1 (one per filter tray of the night).
        config: thresholds (:class:`BadPixelConfig`).

    Returns:
        :class:`BadPixelMask`.

    Raises:
        BadPixelError: neither darks nor flats, mismatched shapes or non-positive times.
    """
    if not darks and not flats:
        raise BadPixelError("a bad-pixel mask needs darks or master flats")
    shape = np.shape(darks[0]) if darks else np.shape(flats[0])
    for f in flats:
        if np.shape(f) != shape:
            raise BadPixelError(f"master flat shape {np.shape(f)} differs from {shape}")
    none = np.zeros(shape, bool)
    hot, hot_cols, unstable = none, none, none
    level = noise = float("nan")
    if darks:
        stack, rate = dark_rate(darks, exptimes, bias)
        level, noise = _level_noise(rate)
        hot = hot_from_dark(rate, n_frames=len(darks), config=config)
        lmap, nmap = _local_level_noise(rate)
        sig = (rate - lmap) / nmap
        hot_cols = column_defects(
            sig,
            window=config.column_window,
            nsigma=config.column_nsigma,
            min_length=config.column_min_length,
        )
        unstable = unstable_pixels(
            stack,
            rate,
            float(np.mean(exptimes)),
            nsigma=config.unstable_nsigma,
            min_frames=config.unstable_min_frames,
        )
    dead, dead_cols = _flat_defects(flats, config) if flats else (none, none)
    mask = np.zeros(shape, MASK_DTYPE)
    mask[hot | hot_cols] |= MASK_DTYPE(MaskBit.HOT)
    mask[dead | dead_cols | unstable] |= MASK_DTYPE(MaskBit.BAD_PIXEL)
    stats = {
        "n_hot": float(hot.sum()),
        "n_hot_column_pixels": float((hot_cols & ~hot).sum()),
        "n_dead": float(dead.sum()),
        "n_dead_column_pixels": float(dead_cols.sum()),
        "n_unstable": float(unstable.sum()),
        "bad_fraction": float((mask != 0).mean()),
        "n_darks": float(len(darks)),
        "n_flats": float(len(flats)),
        "dark_level": level,
        "dark_noise": noise,
    }
    return BadPixelMask(mask, hot, hot_cols, dead, dead_cols, unstable, stats)
