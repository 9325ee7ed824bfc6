"""Master calibration frames (bias, dark, flat) and their quality figures.

Inputs are assembled CCD frames in electrons (:func:`surveydm.reduction.assemble.assemble_ccd`:
overscan subtracted, trimmed, gain applied), given as arrays or as a callable
``frames(i, rows) -> rows of frame i`` so that the combination runs in bounded memory
(:func:`surveydm.reduction.combine.combine`).

* Master bias: sigma-clipped median of the bias frames (residual bias structure after the
  overscan correction). QC: level, noise (single-frame, from the per-pixel scatter), structure
  (rms of the master binned in 32 x 32 boxes: large-scale pattern not removed by the overscan).
* Master dark: sigma-clipped median of (dark - bias) / exptime, e-/s.
* Master flat (J-PLUS / PAUdm practice, seed 002): each flat bias- (and dark-) subtracted,
  normalised by its median, frames far off the set's typical level (or near saturation)
  rejected, combined with sigma clipping, the result normalised to median 1 over good pixels.
  QC: pixel-to-pixel rms, residual rms of each input flat against the master, and stability
  (rms of the ratio to the previous master).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.stats import mad_std

from surveydm.errors import SurveydmError
from surveydm.reduction.combine import FrameSource, as_frame_source, combine, default_chunk_rows

#: Subsampling step (rows and columns) used for robust levels of full frames.
LEVEL_STEP = 4


class CalibrationError(SurveydmError):
    """A master calibration frame cannot be made (too few usable frames, bad input)."""


@dataclass
class MasterFrame:
    """A master calibration frame.

    Attributes:
        image: (ny, nx) float32 (bias: e-; dark: e-/s; flat: relative response, median 1).
        std: (ny, nx) float32 scatter of the kept input values per pixel (same unit as the
            inputs before normalisation for bias/dark; normalised units for flats).
        n: number of input frames used.
        stats: quality figures (see :func:`bias_qc`, :func:`flat_qc`), name -> number
            (every value converts with ``float()``, ready for QC records).
        n_used: (ny, nx) uint16 frames kept per pixel after clipping.
        details: per-input information (levels, rejected frames and why, per-frame residuals).
    """

    image: np.ndarray
    std: np.ndarray
    n: int
    stats: dict[str, float] = field(default_factory=dict)
    n_used: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _rows(get: Callable[[int, slice], np.ndarray], i: int, ny: int, chunk: int):
    for y0 in range(0, ny, chunk):
        y1 = min(ny, y0 + chunk)
        yield y0, y1, get(i, slice(y0, y1))


def frame_level(
    get: Callable[[int, slice], np.ndarray],
    i: int,
    shape: tuple[int, int],
    *,
    chunk_rows: int = 256,
    good: np.ndarray | None = None,
) -> float:
    """Median of frame ``i`` over a 1-in-``LEVEL_STEP`` subsample of good, finite pixels."""
    ny, _ = shape
    samples = []
    for y0, y1, part in _rows(get, i, ny, chunk_rows):
        start = (-y0) % LEVEL_STEP
        sub = np.asarray(part)[start::LEVEL_STEP, ::LEVEL_STEP]
        if good is not None:
            sub = sub[good[y0 + start : y1 : LEVEL_STEP, ::LEVEL_STEP]]
        samples.append(np.ravel(sub))
    values = np.concatenate(samples) if samples else np.empty(0)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def binned_rms(image: np.ndarray, box: int = 32, good: np.ndarray | None = None) -> float:
    """rms about the median of ``image`` averaged in ``box x box`` cells (large-scale structure).

    Cells are nan-means of finite (and ``good``) pixels; edges that do not fill a cell are
    dropped.
    """
    img = np.asarray(image, dtype=np.float32)
    ny, nx = (img.shape[0] // box) * box, (img.shape[1] // box) * box
    if ny == 0 or nx == 0:
        raise ValueError(f"image {img.shape} smaller than one {box}x{box} box")
    img = img[:ny, :nx]
    if good is not None:
        img = np.where(good[:ny, :nx], img, np.nan)
    blocks = img.reshape(ny // box, box, nx // box, box)
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=(1, 3))
    sums = np.where(finite, blocks, 0.0).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cells = sums / counts
    cells = cells[np.isfinite(cells)]
    return float(np.sqrt(np.mean((cells - np.median(cells)) ** 2))) if cells.size else 0.0


def bias_qc(
    master: np.ndarray, std: np.ndarray | None = None, previous: np.ndarray | None = None
) -> dict[str, float]:
    """Quality figures of a master bias (e-).

    Returns:
        ``level`` (median, e-), ``noise`` (median per-pixel scatter of the input frames, e-,
        when ``std`` is given: the single-frame read noise), ``master_noise`` (robust rms of
        the master, e-), ``structure`` (rms of the 32x32-binned master, e-) and, with
        ``previous``, ``stability_rms`` (robust rms of master - previous, e-).
    """
    sub = master[::LEVEL_STEP, ::LEVEL_STEP]
    sub = sub[np.isfinite(sub)]
    out = {
        "level": float(np.median(sub)),
        "master_noise": float(mad_std(sub)),
        "structure": binned_rms(master),
    }
    if std is not None:
        s = std[::LEVEL_STEP, ::LEVEL_STEP]
        out["noise"] = float(np.nanmedian(s))
    if previous is not None:
        d = (master - previous)[::LEVEL_STEP, ::LEVEL_STEP]
        out["stability_rms"] = float(mad_std(d[np.isfinite(d)]))
    return out


def flat_qc(
    master: np.ndarray, previous: np.ndarray | None = None, good: np.ndarray | None = None
) -> dict[str, float]:
    """Quality figures of a master flat normalised to 1.

    Returns:
        ``median`` (over good pixels within [0.5, 1.5]: 1 by construction), ``pixel_rms``
        (robust rms of the flat: pixel response scatter plus noise), ``structure`` (rms of the
        32x32-binned flat: illumination and vignetting), ``bad_fraction`` (response outside
        [0.5, 1.5]) and, with ``previous``,
        ``stability_rms`` (robust rms of master / previous - 1).
    """
    sub = master[::LEVEL_STEP, ::LEVEL_STEP]
    if good is not None:
        sub = sub[good[::LEVEL_STEP, ::LEVEL_STEP]]
    sub = sub[np.isfinite(sub)]
    with np.errstate(invalid="ignore"):
        bad = ~((master >= 0.5) & (master <= 1.5))
    sel = ~bad if good is None else good & ~bad
    out = {
        "median": float(np.median(master[sel])),
        "pixel_rms": float(mad_std(sub)),
        "structure": binned_rms(master, good=good),
        "bad_fraction": float(bad.mean()),
    }
    if previous is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (master / previous)[::LEVEL_STEP, ::LEVEL_STEP]
        ratio = ratio[np.isfinite(ratio)]
        out["stability_rms"] = float(mad_std(ratio)) if ratio.size else float("nan")
    return out


def _check_calibration_shapes(shape: tuple[int, int], **frames: np.ndarray | None) -> None:
    for name, arr in frames.items():
        if arr is not None and tuple(np.shape(arr)) != tuple(shape):
            raise CalibrationError(
                f"{name} has shape {tuple(np.shape(arr))}, the frames have {tuple(shape)}"
            )


def master_bias(
    frames: FrameSource,
    *,
    sigma: float = 3.0,
    maxiters: int | None = 5,
    chunk_rows: int | None = None,
    n_frames: int | None = None,
    shape: tuple[int, int] | None = None,
    previous: np.ndarray | None = None,
    min_frames: int = 3,
) -> MasterFrame:
    """Master bias: sigma-clipped median of overscan-corrected bias frames.

    Args:
        frames: assembled bias frames (e-), arrays or a callable ``(i, rows) -> array``
            (then ``n_frames`` and ``shape`` are required).
        sigma, maxiters, chunk_rows: passed to :func:`combine`.
        previous: the previous master bias, for the stability figure.
        min_frames: fewer frames raise :class:`CalibrationError`.

    Returns:
        :class:`MasterFrame` (image e-, stats from :func:`bias_qc`).

    Raises:
        CalibrationError: fewer than ``min_frames`` frames.
    """
    get, n, shp = as_frame_source(frames, n_frames, shape)
    if n < min_frames:
        raise CalibrationError(f"master bias needs at least {min_frames} frames, got {n}")
    res = combine(
        get,
        method="median",
        sigma=sigma,
        maxiters=maxiters,
        chunk_rows=chunk_rows,
        n_frames=n,
        shape=shp,
    )
    stats = bias_qc(res.image, res.std, previous)
    stats["n_frames"] = float(n)
    return MasterFrame(image=res.image, std=res.std, n=n, stats=stats, n_used=res.n_used)


def master_dark(
    frames: FrameSource,
    exptimes: Sequence[float],
    *,
    bias: np.ndarray | None = None,
    sigma: float = 3.0,
    maxiters: int | None = 5,
    chunk_rows: int | None = None,
    n_frames: int | None = None,
    shape: tuple[int, int] | None = None,
    min_frames: int = 3,
) -> MasterFrame:
    """Master dark current (e-/s): clipped median of (dark - bias) / exptime.

    Raises:
        CalibrationError: fewer than ``min_frames`` frames, a non-positive exposure time or a
            bias of another shape.
    """
    get, n, shp = as_frame_source(frames, n_frames, shape)
    _check_calibration_shapes(shp, bias=bias)
    if n < min_frames:
        raise CalibrationError(f"master dark needs at least {min_frames} frames, got {n}")
    t = np.asarray(exptimes, dtype=np.float64)
    if t.shape != (n,) or np.any(t <= 0):
        raise CalibrationError(f"master dark needs {n} positive exposure times, got {exptimes}")

    def read(i: int, rows: slice) -> np.ndarray:
        part = np.asarray(get(i, rows), dtype=np.float32)
        if bias is not None:
            part = part - bias[rows]
        return part

    res = combine(
        read,
        method="median",
        sigma=sigma,
        maxiters=maxiters,
        chunk_rows=chunk_rows,
        n_frames=n,
        shape=shp,
        scales=1.0 / t,
    )
    stats = {
        "level": float(np.nanmedian(res.image[::LEVEL_STEP, ::LEVEL_STEP])),
        "n_frames": float(n),
    }
    return MasterFrame(image=res.image, std=res.std, n=n, stats=stats, n_used=res.n_used)


def master_flat(
    frames: FrameSource,
    bias: np.ndarray | None = None,
    dark: np.ndarray | None = None,
    *,
    exptimes: Sequence[float] | None = None,
    good: np.ndarray | None = None,
    min_level: float = 1000.0,
    max_level: float | None = None,
    level_tolerance: float | None = 0.5,
    sigma: float = 3.0,
    maxiters: int | None = 5,
    chunk_rows: int | None = None,
    n_frames: int | None = None,
    shape: tuple[int, int] | None = None,
    previous: np.ndarray | None = None,
    min_frames: int = 3,
) -> MasterFrame:
    """Master flat of one filter: normalised, sigma-clipped median of bias-subtracted flats.

    Args:
        frames: assembled flat frames (e-), arrays or callable (then ``n_frames``, ``shape``).
        bias: master bias (e-) subtracted from every frame.
        dark: master dark (e-/s), subtracted times ``exptimes`` (required with ``dark``).
        good: (ny, nx) bool of pixels used for levels and the final normalisation (default:
            all finite pixels).
        min_level: frames whose median level (e-) is below this are rejected (under-exposed).
        max_level: frames above this (e-, e.g. 0.8 x full well) are rejected (non-linear).
        level_tolerance: frames whose median level differs from the median level of the
            usable frames by more than this fraction are rejected (0.5: outside 0.5x-1.5x):
            a frame far off in level (shutter fault, clouds, wrong lamp) is not representative.
            None disables the test.
        sigma, maxiters, chunk_rows: passed to :func:`combine`.
        previous: previous master flat of the same CCD and filter, for ``stability_rms``.
        min_frames: fewer accepted frames raise :class:`CalibrationError`.

    Returns:
        :class:`MasterFrame`: image median 1 over good pixels (0 where no frame survived);
        ``stats`` from :func:`flat_qc` plus ``n_frames``, ``n_rejected``, ``level_median``
        (e-), ``residual_rms`` (largest, over the accepted frames, robust rms of the
        normalised flat divided by the master minus 1: the flats' mutual consistency) and
        ``residual_rms_median``; ``details`` has ``levels`` (e-, every input), ``used``,
        ``rejected`` (input index -> reason) and ``residual_rms`` (input index -> value).

    Raises:
        CalibrationError: fewer than ``min_frames`` usable frames, or calibration arrays whose
            shape differs from the frames'.
    """
    get, n, shp = as_frame_source(frames, n_frames, shape)
    _check_calibration_shapes(shp, bias=bias, dark=dark, good=good, previous=previous)
    if dark is not None and (exptimes is None or len(exptimes) != n):
        raise CalibrationError("master flat with a dark needs one exposure time per frame")
    t = np.zeros(n) if exptimes is None else np.asarray(exptimes, dtype=np.float64)
    chunk = chunk_rows or default_chunk_rows(n, shp[1])

    def read(i: int, rows: slice) -> np.ndarray:
        part = np.array(get(i, rows), dtype=np.float32, copy=True)
        if bias is not None:
            part -= bias[rows]
        if dark is not None and t[i] > 0:
            part -= np.float32(t[i]) * dark[rows]
        return part

    levels = [frame_level(read, i, shp, chunk_rows=chunk, good=good) for i in range(n)]
    rejected = _reject_flat_levels(levels, min_level, max_level, level_tolerance)
    ok = [i for i in range(n) if i not in rejected]
    if len(ok) < min_frames:
        raise CalibrationError(
            f"master flat needs at least {min_frames} usable frames, got {len(ok)} of {n}"
            + (f"; rejected: {rejected}" if rejected else "")
        )

    def read_ok(k: int, rows: slice) -> np.ndarray:
        return read(ok[k], rows)

    res = combine(
        read_ok,
        method="median",
        sigma=sigma,
        maxiters=maxiters,
        chunk_rows=chunk,
        n_frames=len(ok),
        shape=shp,
        scales=[1.0 / levels[i] for i in ok],
    )
    image = res.image
    valid = np.isfinite(image) & (res.n_used > 0)
    norm_sel = valid if good is None else valid & good
    norm = float(np.median(image[norm_sel]))
    if not np.isfinite(norm) or norm <= 0:
        raise CalibrationError(f"master flat has a non-positive median {norm}")
    image /= np.float32(norm)
    image[~valid] = 0.0
    std = res.std / np.float32(norm)

    residuals = [
        _flat_residual_rms(read, i, levels[i] * norm, image, good, shp[0], chunk) for i in ok
    ]
    stats: dict[str, float] = flat_qc(image, previous, good)
    finite = [r for r in residuals if np.isfinite(r)]
    stats.update(
        n_frames=float(len(ok)),
        n_rejected=float(len(rejected)),
        level_median=float(np.median([levels[i] for i in ok])),
        residual_rms=float(max(finite)) if finite else float("nan"),
        residual_rms_median=float(np.median(finite)) if finite else float("nan"),
    )
    details = {
        "levels": [float(v) for v in levels],
        "used": list(ok),
        "rejected": {int(k): v for k, v in rejected.items()},
        "residual_rms": dict(zip(ok, residuals, strict=True)),
    }
    return MasterFrame(
        image=image, std=std, n=len(ok), stats=stats, n_used=res.n_used, details=details
    )


def _reject_flat_levels(
    levels: list[float], min_level: float, max_level: float | None, tolerance: float | None
) -> dict[int, str]:
    """Flats rejected by their median level (e-): input index -> reason (see
    :func:`master_flat`: ``min_level``, ``max_level``, then ``level_tolerance`` about the
    median level of the others)."""
    rejected: dict[int, str] = {}
    for i, lev in enumerate(levels):
        if not np.isfinite(lev) or lev < min_level:
            rejected[i] = f"level {lev:.1f} e- below min_level {min_level}"
        elif max_level is not None and lev > max_level:
            rejected[i] = f"level {lev:.1f} e- above max_level {max_level}"
    ok = [i for i in range(len(levels)) if i not in rejected]
    if ok and tolerance is not None:
        typical = float(np.median([levels[i] for i in ok]))
        for i in list(ok):
            if abs(levels[i] / typical - 1.0) > tolerance:
                rejected[i] = f"level {levels[i]:.1f} e- far from typical {typical:.1f} e-"
    return rejected


def _flat_residual_rms(
    read: Callable[[int, slice], np.ndarray],
    i: int,
    scale: float,
    master: np.ndarray,
    good: np.ndarray | None,
    ny: int,
    chunk: int,
) -> float:
    """Robust rms (``mad_std``) of flat ``i`` divided by ``scale`` (its level times the
    master's normalisation) and by the ``master``, minus 1, on every ``LEVEL_STEP``-th row
    and column of the good pixels where the master is positive; NaN without such pixels."""
    step = (slice(None, None, LEVEL_STEP), slice(None, None, LEVEL_STEP))
    msub = master[step]
    msel = msub > 0
    if good is not None:
        msel &= good[step]
    sub = np.empty_like(msub)
    for y0, _y1, part in _rows(read, i, ny, chunk):
        start = (-y0) % LEVEL_STEP
        picked = part[start::LEVEL_STEP, ::LEVEL_STEP]
        first = (y0 + start) // LEVEL_STEP
        sub[first : first + picked.shape[0]] = picked
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sub[msel] / scale / msub[msel] - 1.0
    r = r[np.isfinite(r)]
    return float(mad_std(r)) if r.size else float("nan")
