"""The image as the extraction steps measure it: validated pixels, background-subtracted, with
noise maps and masks (sep / SExtractor conventions, Bertin & Arnouts 1996)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from surveydm.errors import SurveydmError
from surveydm.reduction.masks import MaskBit

__all__ = [
    "DETECTION_MAX_GAP",
    "ExtractionError",
    "MeasurementImage",
    "as_image",
    "as_mask",
    "fill_masked_pixels",
    "measurement_image",
]

#: Longest run of masked pixels (pixels) bridged by interpolation (SExtractor's
#: ``INTERP_MAXXLAG`` is 16; saturated cores of bright stars are wider).
DETECTION_MAX_GAP = 128


class ExtractionError(SurveydmError):
    """The inputs of background estimation or source extraction are unusable."""


def as_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as a C-contiguous native float32 (ny, nx) array; ExtractionError otherwise."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ExtractionError(f"{name} must be a 2-D (ny, nx) array, got shape {arr.shape}")
    if arr.size == 0:
        raise ExtractionError(f"{name} is empty")
    if arr.dtype != np.float32 or not arr.dtype.isnative:
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``mask`` checked to be an integer (or bool) bit mask of ``shape``; None stays None."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != shape:
        raise ExtractionError(f"mask shape {m.shape} does not match image shape {shape}")
    if not np.issubdtype(m.dtype, np.integer) and m.dtype != np.bool_:
        raise ExtractionError(f"mask must be an integer bit mask, got dtype {m.dtype}")
    return m


@dataclass(frozen=True)
class MeasurementImage:
    """The pixels every extraction step measures, with their noise and masks.

    Attributes:
        sub: (ny, nx) float32 background-subtracted image, e- (non-finite pixels set to 0).
        background: (ny, nx) float32 background level that was subtracted, e-.
        mask: (ny, nx) integer ``MaskBit`` mask (NO_DATA where the image was not finite), or
            None.
        det_image: (ny, nx) float32 image the detection thresholds: ``sub`` with its masked
            and zero-weight pixels interpolated by :func:`fill_masked_pixels` (pixels whose
            only bits are ignored for detection excepted); ``sub`` itself when none are.
        err_bkg: (ny, nx) float32 background-only sigma, e- (detection threshold, PSF-fit
            weights).
        err_sum: (ny, nx) float32 sigma of each pixel for flux sums, e-.
        sum_gain: gain for the source Poisson term of flux sums, or None when ``err_sum``
            already holds it (a total-variance weight map).
        gain: e- per image unit, for the source Poisson term of fits.
        det_mask: (ny, nx) bool pixels hidden from detection (masked pixels too far from good
            ones to interpolate), or None.
        filled: (ny, nx) bool pixels interpolated in ``det_image``, or None.
        meas_mask: (ny, nx) bool pixels left out of every measurement, or None.
    """

    sub: np.ndarray
    det_image: np.ndarray
    background: np.ndarray
    mask: np.ndarray | None
    err_bkg: np.ndarray
    err_sum: np.ndarray
    sum_gain: float | None
    gain: float
    det_mask: np.ndarray | None
    meas_mask: np.ndarray | None
    filled: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the image."""
        return self.sub.shape


def measurement_image(
    image: np.ndarray,
    background,
    *,
    mask: np.ndarray | None,
    weight: np.ndarray | None,
    weight_kind: str,
    gain: float,
    detection_ignored_bits: int,
) -> MeasurementImage:
    """Validate the inputs of ``extract_sources`` and make its :class:`MeasurementImage`.

    NaN/inf pixels are measured as masked (``NO_DATA``), never propagated. Arguments as for
    :func:`~surveydm.reduction.extraction.extract_sources`.

    Raises:
        ExtractionError: bad shapes or dtypes, a non-positive gain, an unknown ``weight_kind``,
            or a noise map with non-positive or non-finite values.
    """
    data = as_image(image)
    m = as_mask(mask, data.shape)
    if not (gain > 0 and math.isfinite(gain)):
        raise ExtractionError(f"gain must be positive, got {gain}")
    finite = None
    if not math.isfinite(float(np.sum(data, dtype=np.float64))):  # one pass when all finite
        finite = np.isfinite(data)
    if finite is not None and not finite.all():
        data = np.where(finite, data, np.float32(0.0))
        m = np.where(finite, 0 if m is None else m, int(MaskBit.NO_DATA)).astype(np.uint16)
    err_bkg, err_sum, add_poisson, det_mask, meas_mask, fill = _noise_maps(
        data, background, m, weight, weight_kind, detection_ignored_bits
    )
    sub = np.ascontiguousarray(data - background.image, dtype=np.float32)
    det_image, filled = sub, None
    if fill is not None and fill.any():
        det_image, unfilled = fill_masked_pixels(sub, fill)
        filled = fill & ~unfilled
        det_mask = unfilled if det_mask is None else (det_mask | unfilled)
    return MeasurementImage(
        sub=sub,
        det_image=det_image,
        background=background.image,
        mask=m,
        err_bkg=err_bkg,
        err_sum=err_sum,
        sum_gain=gain if add_poisson else None,
        gain=gain,
        det_mask=det_mask,
        meas_mask=meas_mask,
        filled=filled,
    )


def _noise_maps(
    data: np.ndarray,
    background,
    mask: np.ndarray | None,
    weight: np.ndarray | None,
    weight_kind: str,
    detection_ignored_bits: int,
) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Noise maps and masks for extraction.

    Returns ``(err_bkg, err_sum, add_poisson, det_mask, meas_mask, fill)``: the
    background-only sigma (detection threshold, PSF-fit weights), the sigma for flux sums,
    whether the source Poisson term must be added to ``err_sum``, the detection / measurement
    masks and the pixels to interpolate in the detection image.
    """
    if background.image.shape != data.shape or background.rms.shape != data.shape:
        raise ExtractionError("background maps do not match the image shape")
    if weight_kind not in ("total", "background"):
        raise ExtractionError(f"weight_kind must be 'total' or 'background', got {weight_kind!r}")
    rms = np.ascontiguousarray(background.rms, dtype=np.float32)
    w = None
    n_zero_w = 0
    if weight is not None:
        w = np.ascontiguousarray(weight, dtype=np.float32)
        if w.shape != data.shape:
            raise ExtractionError(f"weight shape {w.shape} does not match image {data.shape}")
        err_w = np.empty_like(w)
        # zero / negative / non-finite weights take the background RMS
        n_zero_w, n_invalid = _weight_errors(w.ravel(), rms.ravel(), err_w.ravel())
        if n_invalid:
            raise ExtractionError("noise map has non-positive or non-finite values")
        if weight_kind == "total":
            err_bkg, err_sum, add_poisson = rms, err_w, False
        else:
            err_bkg, err_sum, add_poisson = err_w, err_w, True
    else:
        err_bkg, err_sum, add_poisson = rms, rms, True
    if err_bkg is rms or err_sum is rms:
        lo, hi = float(rms.min()), float(rms.max())
        if not (lo > 0 and math.isfinite(hi)):
            raise ExtractionError("noise map has non-positive or non-finite values")
    meas_mask, fill = _masks(mask, w if n_zero_w else None, detection_ignored_bits)
    return err_bkg, err_sum, add_poisson, None, meas_mask, fill


def _masks(
    mask: np.ndarray | None, weight: np.ndarray | None, detection_ignored_bits: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(measurement mask, pixels to interpolate for detection) from the bit mask and the
    zero-weight pixels of ``weight`` (None: no pixel has zero weight).

    Every masked or zero-weight pixel is interpolated for detection (the detection mask then
    holds those that cannot be), except those whose only bits are ``detection_ignored_bits``:
    they are detected as they are. Every masked or zero-weight pixel is left out of
    measurements.
    """
    if mask is None and weight is None:
        return None, None
    shape = mask.shape if mask is not None else weight.shape
    fill = np.empty(shape, bool)
    meas = np.empty(shape, bool)
    m = np.zeros(1, np.uint8) if mask is None else np.ascontiguousarray(mask)
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
    w = np.ones(1, np.float32) if weight is None else weight
    keep = ~int(detection_ignored_bits)
    _mask_maps(m.ravel(), mask is not None, w.ravel(), weight is not None, keep,
               fill.ravel(), meas.ravel())  # fmt: skip
    return meas, fill


@njit(cache=True, nogil=True)
def _weight_errors(w, rms, err):
    """``err = 1 / sqrt(w)`` where the weight is positive and finite, else the background RMS
    (1-d views). Returns (pixels without weight, pixels whose error is not positive finite)."""
    n_zero = 0
    n_invalid = 0
    for i in range(w.size):
        wi = w[i]
        if wi > 0 and wi < np.inf:
            e = np.float32(1.0 / math.sqrt(wi))
        else:
            e = rms[i]
            n_zero += 1
        err[i] = e
        if not (e > 0 and e < np.inf):
            n_invalid += 1
    return n_zero, n_invalid


@njit(cache=True, nogil=True)
def _mask_maps(mask, has_mask, w, has_w, keep, fill, meas):
    """Fill ``fill`` (interpolate for detection) and ``meas`` (left out of measurements) from
    the bit mask and the zero-weight pixels, in one pass over 1-d views (see :func:`_masks`)."""
    for i in range(fill.size):
        mi = np.int64(mask[i]) if has_mask else np.int64(0)
        zw = False
        if has_w:
            wi = w[i]
            zw = not (wi > 0 and wi < np.inf)
        fill[i] = (mi & keep) != 0 or (zw and mi == 0)
        meas[i] = mi != 0 or zw


def fill_masked_pixels(
    image: np.ndarray, fill: np.ndarray, *, max_gap: int = DETECTION_MAX_GAP
) -> tuple[np.ndarray, np.ndarray]:
    """Replace the ``fill`` pixels of ``image`` by linear interpolation between the nearest
    good pixels on either side along the row, else along the column; a run that reaches the
    image border takes the value of the good pixel at its other end.

    SExtractor's treatment of zero-weight pixels in detection (Bertin & Arnouts 1996;
    SExtractor manual, ``INTERP_TYPE ALL``), with linear rather than nearest-pixel values: a
    bleed trail or bad column is bridged by its neighbours, so it neither merges the sources
    along it nor splits a source it crosses; a saturated core becomes a plateau between its
    unsaturated edges, so the star is still detected once.

    Args:
        image: (ny, nx) float32 (not modified).
        fill: (ny, nx) bool, the pixels to replace.
        max_gap: longest run of ``fill`` pixels (pixels) bridged in one direction.

    Returns:
        ``(filled, unfilled)``: a float32 copy of ``image`` with the pixels replaced, and the
        (ny, nx) bool ``fill`` pixels that no good pixel pair within ``max_gap`` bridged along
        either axis (left as they were).

    Raises:
        ValueError: ``fill`` does not have the image's shape.
    """
    if fill.shape != image.shape:
        raise ValueError(f"fill mask shape {fill.shape} does not match image {image.shape}")
    out = np.array(image, dtype=np.float32, copy=True)
    done = _interpolate_rows(out, fill, max_gap)
    left = fill & ~done
    if left.any():
        done_t = _interpolate_rows(out.T, left.T, max_gap)  # out.T is a view: writes through
        left &= ~done_t.T
    return out, left


def _interpolate_rows(arr: np.ndarray, fill: np.ndarray, max_gap: int) -> np.ndarray:
    """Interpolate the ``fill`` pixels of ``arr`` in place along axis 1 (runs of at most
    ``max_gap``: linear between the good pixels on both sides, or the one good pixel of a run
    reaching the border); returns the bool map of pixels replaced. Works on the runs (found
    on the flattened, zero-padded mask), not on every pixel."""
    ny, nx = fill.shape
    done = np.zeros(fill.shape, bool)
    padded = np.zeros((ny, nx + 2), np.int8)
    padded[:, 1:-1] = fill
    edges = np.diff(padded.ravel())
    starts = np.flatnonzero(edges == 1) + 1
    stops = np.flatnonzero(edges == -1) + 1
    row = starts // (nx + 2)
    c0 = starts % (nx + 2) - 1  # first pixel of the run
    c1 = stops % (nx + 2) - 1  # first pixel after it (nx: the run reaches the border)
    length = c1 - c0
    has_left, has_right = c0 > 0, c1 < nx
    ok = (has_left | has_right) & (length <= max_gap)
    row, c0, length = row[ok], c0[ok], length[ok]
    lo = np.where(has_left[ok], c0 - 1, c1[ok])
    hi = np.where(has_right[ok], c1[ok], c0 - 1)
    if not len(row):
        return done
    run = np.repeat(np.arange(len(row)), length)
    cols = c0[run] + (np.arange(run.size) - np.repeat(np.cumsum(length) - length, length))
    rows = row[run]
    a, b = arr[row, lo], arr[row, hi]
    t = ((cols - lo[run]) / np.maximum(hi - lo, 1)[run]).astype(np.float32)
    arr[rows, cols] = a[run] + (b - a)[run] * t
    done[rows, cols] = True
    return done
