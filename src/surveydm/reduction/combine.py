"""Sigma-clipped combination of a stack of frames in bounded memory.

The stack is processed in blocks of ``chunk_rows`` rows: only the block of every frame
(``n_frames x chunk_rows x nx`` float32) is held at a time, so 20 full-size 4096 x 2048 CCD
frames need ~100 MB instead of 640 MB, and frames can be read lazily (memmapped FITS) through a
callable ``frames(i, rows) -> array``.

Rejection follows astropy's :func:`astropy.stats.sigma_clip` (``cenfunc="median"``,
``stdfunc="std"``, symmetric ``sigma``, iterated until nothing changes or ``maxiters``): a value
is rejected when it lies outside ``[centre - sigma*std, centre + sigma*std]`` of the values kept
so far, and rejected values stay rejected. It is implemented without per-pixel loops: each
block is sorted along the frame axis once, after which the kept values of every pixel are a
contiguous range ``[lo, hi)`` of the sorted stack; medians are read at the range's middle,
and after the first pass only the pixels whose range changed are recomputed.
NaN input values are treated as missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

FrameSource = Sequence[np.ndarray] | Callable[[int, slice], np.ndarray]

#: Target size (bytes) of one float32 block stack when ``chunk_rows`` is not given.
DEFAULT_BLOCK_BYTES = 16 * 1024**2


@dataclass
class CombineResult:
    """Result of :func:`combine`.

    Attributes:
        image: (ny, nx) float32 combined frame (NaN where no value survived).
        n_used: (ny, nx) uint16 number of frames kept per pixel.
        std: (ny, nx) float32 standard deviation (ddof=0) of the kept values per pixel.
    """

    image: np.ndarray
    n_used: np.ndarray
    std: np.ndarray


def as_frame_source(
    frames: FrameSource, n_frames: int | None = None, shape: tuple[int, int] | None = None
) -> tuple[Callable[[int, slice], np.ndarray], int, tuple[int, int]]:
    """Normalise a frame source to ``(read(i, rows) -> array, n_frames, (ny, nx))``.

    Raises:
        ValueError: a callable without ``n_frames``/``shape``, no frames, or frames that are
            not 2-d arrays of one shape.
    """
    if callable(frames):
        if n_frames is None or shape is None:
            raise ValueError("a callable frame source needs n_frames and shape")
        return frames, int(n_frames), (int(shape[0]), int(shape[1]))
    arrays = list(frames)
    if not arrays:
        raise ValueError("no frames to combine")
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"frames must be 2-d arrays of one shape, got shapes {sorted(shapes)}")
    shp = next(iter(shapes))

    def get(i: int, rows: slice) -> np.ndarray:
        return arrays[i][rows]

    return get, len(arrays), (int(shp[0]), int(shp[1]))


def default_chunk_rows(n_frames: int, nx: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Rows per block so that one float32 block stack takes about ``block_bytes``."""
    return max(1, block_bytes // max(1, 4 * n_frames * nx))


def _subset_stats(
    rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, want_mean: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, mean and std (ddof=0) of the sorted values ``rows[k, lo[k]:hi[k]]``.

    ``rows`` is (k, n) float32 sorted along axis 1. Returns float64 arrays of length k (NaN
    where the range is empty).
    """
    k, n = rows.shape
    count = hi - lo
    r = np.arange(k)
    i1 = np.clip(lo + (count - 1) // 2, 0, n - 1)
    i2 = np.clip(lo + count // 2, 0, n - 1)
    median = 0.5 * (rows[r, i1].astype(np.float64) + rows[r, i2])
    idx = np.arange(n)
    inside = (idx >= lo[:, None]) & (idx < hi[:, None])
    dev = rows - median.astype(np.float32)[:, None]  # about the median: stable in float32
    np.copyto(dev, 0.0, where=~inside)
    safe = np.maximum(count, 1)
    mean_dev = dev.sum(axis=1, dtype=np.float64) / safe
    np.square(dev, out=dev)
    var = np.maximum(dev.sum(axis=1, dtype=np.float64) / safe - mean_dev * mean_dev, 0.0)
    empty = count == 0
    median[empty] = np.nan
    std = np.sqrt(var)
    std[empty] = np.nan
    mean = median + mean_dev if want_mean else median
    return median, mean, std


def _clip_block(
    stack: np.ndarray,
    *,
    method: str,
    sigma_lower: float,
    sigma_upper: float,
    maxiters: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clip and combine one block; ``stack`` is (rows, nx, n) float32 (sorted in place).

    After the first pass only pixels whose kept range changed are revisited: a pixel whose
    kept set did not change has the same bounds and cannot change again.
    """
    stack.sort(axis=-1)  # NaN sort to the end
    shape = stack.shape[:-1]
    n = stack.shape[-1]
    flat = stack.reshape(-1, n)
    npix = flat.shape[0]
    lo = np.zeros(npix, np.intp)
    hi = np.count_nonzero(~np.isnan(flat), axis=1).astype(np.intp)
    median = np.empty(npix)
    mean = np.empty(npix)
    std = np.empty(npix)
    active = np.arange(npix)
    iteration = 0
    want_mean = method == "mean"
    while active.size:
        rows = flat if active.size == npix else flat[active]
        med, mu, sd = _subset_stats(rows, lo[active], hi[active], want_mean)
        median[active], mean[active], std[active] = med, mu, sd
        if maxiters is not None and iteration >= maxiters:
            break
        iteration += 1
        with np.errstate(invalid="ignore"):
            lower = (med - sigma_lower * sd).astype(np.float32)
            upper = (med + sigma_upper * sd).astype(np.float32)
            below = np.count_nonzero(rows < lower[:, None], axis=1)
            not_above = np.count_nonzero(rows <= upper[:, None], axis=1)
        new_lo = np.maximum(lo[active], below)
        new_hi = np.minimum(hi[active], not_above)
        new_hi = np.maximum(new_hi, new_lo)
        changed = (new_lo != lo[active]) | (new_hi != hi[active])
        lo[active] = new_lo
        hi[active] = new_hi
        active = active[changed]
    count = (hi - lo).astype(np.uint16)
    value = median if method == "median" else mean
    return (
        value.astype(np.float32).reshape(shape),
        count.reshape(shape),
        std.astype(np.float32).reshape(shape),
    )


def combine(
    frames: FrameSource,
    *,
    method: Literal["median", "mean"] = "median",
    sigma: float = 3.0,
    sigma_lower: float | None = None,
    sigma_upper: float | None = None,
    maxiters: int | None = 5,
    scales: Sequence[float] | np.ndarray | None = None,
    chunk_rows: int | None = None,
    n_frames: int | None = None,
    shape: tuple[int, int] | None = None,
) -> CombineResult:
    """Sigma-clipped median or mean of a stack of frames, block by block.

    Args:
        frames: a sequence of (ny, nx) arrays (memmaps welcome), or a callable
            ``frames(i, rows) -> array`` returning rows ``rows`` (a ``slice``) of frame ``i``;
            a callable needs ``n_frames`` and ``shape``. It is never asked for more than
            ``chunk_rows`` rows at once.
        method: ``"median"`` or ``"mean"`` of the kept values.
        sigma: clipping threshold in standard deviations (both sides unless overridden by
            ``sigma_lower`` / ``sigma_upper``).
        maxiters: clipping iterations at most (None: until convergence); 0 disables clipping.
        scales: optional factor per frame, applied (multiplied) before clipping, e.g. 1/level
            to normalise flats.
        chunk_rows: rows per block; default keeps the block stack near 16 MB.
        n_frames, shape: size of a callable source.

    Returns:
        :class:`CombineResult` (float32 image and std, uint16 ``n_used``).

    Raises:
        ValueError: no frames, frames of different shapes, bad method, scales of wrong length,
            a callable returning a block of the wrong shape.

    Peak memory is ~ 3 x 4 * n_frames * chunk_rows * nx bytes (the block and two float32 /
    bool work arrays of its size) plus the outputs (10 bytes per pixel).
    """
    if method not in ("median", "mean"):
        raise ValueError(f"method must be 'median' or 'mean', not {method!r}")
    get, n, (ny, nx) = as_frame_source(frames, n_frames, shape)
    if n < 1:
        raise ValueError("no frames to combine")
    if scales is not None:
        scales = np.asarray(scales, dtype=np.float32)
        if scales.shape != (n,):
            raise ValueError(f"scales has shape {scales.shape}, expected ({n},)")
    rows_per_block = int(chunk_rows) if chunk_rows else default_chunk_rows(n, nx)
    if rows_per_block < 1:
        raise ValueError("chunk_rows must be >= 1")
    lower = sigma if sigma_lower is None else sigma_lower
    upper = sigma if sigma_upper is None else sigma_upper

    image = np.empty((ny, nx), np.float32)
    std = np.empty((ny, nx), np.float32)
    n_used = np.empty((ny, nx), np.uint16)
    buf = np.empty((rows_per_block, nx, n), np.float32)
    for y0 in range(0, ny, rows_per_block):
        y1 = min(ny, y0 + rows_per_block)
        block = buf[: y1 - y0]
        for i in range(n):
            part = np.asarray(get(i, slice(y0, y1)))
            if part.shape != (y1 - y0, nx):
                raise ValueError(
                    f"frame {i} rows {y0}:{y1} have shape {part.shape}, expected {(y1 - y0, nx)}"
                )
            block[..., i] = part
            if scales is not None:
                block[..., i] *= scales[i]
        value, count, dev = _clip_block(
            block, method=method, sigma_lower=lower, sigma_upper=upper, maxiters=maxiters
        )
        image[y0:y1] = value
        n_used[y0:y1] = count
        std[y0:y1] = dev
    return CombineResult(image=image, n_used=n_used, std=std)
