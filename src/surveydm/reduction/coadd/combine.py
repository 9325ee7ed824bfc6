"""Combining warped images into a tile co-add with outlier rejection (seed 002 tile coadding:
median frame, pixel rejection, weighted mean; seed 004 section 3.6, Pan-STARRS stack).

The rejection compares PSF-matched copies of the inputs (the approach of the Pan-STARRS stack,
Waters et al. 2020, PASP sect. 5: inputs convolved to a common PSF for the outlier test, the
unconvolved pixels combined): each warped input of PSF width sigma_i is convolved with a
Gaussian of sigma ``sqrt(s_t^2 - sigma_i^2)`` to the common width ``s_t^2 = max sigma_i^2 +
match_sigma^2``, so a star has the same profile in every matched copy whatever the seeing of
its exposure, and the median of the matched copies is a clean model of each of them. A pixel of
input i is flagged where its matched copy deviates from that median by more than ``nsigma``
times its noise (the matched copy's variance, from the total variance with the sources' noise,
propagated through the kernel, and the median's) plus an upper bound of the residual PSF
mismatch, added linearly as in ``driz_cr`` (Fruchter & Hook 2002; Koekemoer et al. 2003):
``width_tol / 2 |lap M|`` for PSF variances off by up to ``width_tol`` pixels^2 (the bilinear
warp's phase-dependent smoothing, 0-0.25 per axis; the measured FWHM), ``shift_tol |grad M|``
for positions off by ``shift_tol`` pixels, and ``ampfrac |M|`` for the rest (non-Gaussian
PSFs). The allowance is thus large only where the median frame is curved or steep, not a fixed
fraction of the flux (SWarp ``CLIP_AMPFRAC``, Gruen et al. 2014, which with the 0.1 x 5 sigma
this module used before hid cosmic rays and trails up to half a bright star's core flux).
Cosmic rays and satellite trails differ from the PSF and from the median in one input only,
and stand out; star cores, matched, do not.

Of a flagged region (the matched copy spreads an artefact over its kernel) only the pixels
reaching a fraction of the local peak deviation whose unconvolved value is not explained by
the other inputs are the artefact's: on a source, the value predicted from the others with
their PSF widths (for a Gaussian star in Gaussian seeing ``ln(v s^2)`` is linear in ``1/s^2``,
:func:`~surveydm.reduction.coadd.kernels.outside_others`) within ``raw_margin`` sigma plus
``seeing_tol`` of the prediction; off sources, the others' range. They are grown by ``grow``
pixels (on sources only into pixels above both the others and the seeing prediction: a star's
core next to a cosmic ray is kept) and holes filled (a pixel with 5 of its 8 neighbours
rejected). A satellite trail, rejected on empty sky but partly hidden on bright stars, is
masked along its whole line (:mod:`surveydm.reduction.coadd.trails`). The remaining
unconvolved pixels are combined by inverse-variance weighted mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from surveydm.reduction.coadd.kernels import (
    fill_holes,
    grow_mask,
    localise,
    matched_convolution,
    median_frame,
    outside_others,
    reject_pixels,
    weighted_mean,
)
from surveydm.reduction.coadd.trails import mask_trails

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class CombineConfig:
    """Knobs of the rejection and the combination.

    Attributes:
        nsigma: rejection threshold in units of the matched pixel noise (default 5: the
            matched noise is the true noise, not the upper bound of the interpolated
            variance, and 4 sigma flags ~60 noise pixels per million).
        ampfrac: fraction of the matched median flux allowed on top of the noise test for PSF
            mismatch the Gaussian model leaves (default 0.03).
        width_tol: largest error of an input's PSF variance in the matched copy, pixels^2
            (default 0.3: the bilinear warp's phase-dependent smoothing varies by 0.25 per
            axis, plus the FWHM measurement); allowance ``width_tol / 2 |lap M|``.
        shift_tol: largest relative position error, pixels (default 0.1); allowance
            ``shift_tol |grad M|``.
        match_sigma: sigma (pixels) of the Gaussian the worst-seeing input is convolved with
            (every input gets at least this smoothing, which evens out the resampling's
            phase-dependent smoothing; default 0.7).
        localise: fraction of the local peak deviation (within the matching kernel) a
            flagged pixel must reach to be rejected (default 0.1; 0 rejects every flagged
            pixel): the matched copy spreads an artefact over the kernel, the unconvolved
            artefact is its core.
        raw_margin: a flagged pixel is rejected only where its unconvolved value is not
            explained by the other inputs (off sources: outside their range; on sources: off
            the seeing prediction, ``seeing_tol``) by ``raw_margin`` times its noise
            (default 2): within a flagged region only the artefact's own pixels are taken.
        seeing_tol: relative tolerance of the seeing prediction (default 0.1: PSF variances
            known to ~0.2 pixels^2 of ~2).
        seeing_snr: S/N every other input needs at a pixel for the seeing prediction to be
            used (default 10: a source).
        min_kernel_weight: kept fraction of the matching kernel a pixel needs to be compared
            (default 0.25; near masked pixels and input edges a truncated kernel mismatches
            stars: the noise model adds 2 (1 - kept fraction) of the matched median there).
        grow: pixels to grow each input's rejected region by (default 1).
        grow_margin: on sources, a grown pixel must exceed the other inputs and the seeing
            prediction by this many sigma (default 0).
        trail_length: shortest rejected piece (pixels) taken as part of a satellite trail
            and masked along its whole line (default 40; 0: off).
        min_inputs: inputs needed at a pixel for rejection (below it, no pixel is rejected:
            with two inputs the median cannot tell which one is wrong).
    """

    nsigma: float = 5.0
    ampfrac: float = 0.03
    width_tol: float = 0.3
    shift_tol: float = 0.1
    match_sigma: float = 0.7
    localise: float = 0.1
    raw_margin: float = 2.0
    min_kernel_weight: float = 0.25
    grow: int = 1
    grow_margin: float = 0.0
    min_inputs: int = 3
    trail_length: float = 40.0
    seeing_tol: float = 0.1
    seeing_snr: float = 10.0


@dataclass(frozen=True)
class Coadd:
    """A co-added tile (arrays (ny, nx)).

    Attributes:
        image: weighted mean flux on the common zero-point (NaN where no input).
        weight: inverse variance of ``image`` (sum of the kept inputs' weights).
        count: int16 number of inputs combined at each pixel.
        exptime: float32 sum of the kept inputs' exposure times, s.
        rejected: int16 number of inputs rejected at each pixel.
        rejected_masks: (n, ny, nx) bool, the pixels of each input that were rejected.
    """

    image: np.ndarray
    weight: np.ndarray
    count: np.ndarray
    exptime: np.ndarray
    rejected: np.ndarray
    rejected_masks: np.ndarray

    @property
    def rejected_fraction(self) -> float:
        """Rejected input pixels / input pixels with data."""
        n = int(self.count.sum()) + int(self.rejected.sum())
        return float(self.rejected.sum()) / n if n else 0.0


def matching_kernel(sigma: float) -> np.ndarray:
    """1-D float32 kernel (odd length, sum 1) whose variance is ``sigma**2`` pixels^2: the
    3-tap ``[a, 1 - 2a, a]`` with ``a = sigma^2 / 2`` up to sigma^2 = 0.5, a sampled Gaussian
    (half width 3.5 sigma) above; applied along both axes it is the separable Gaussian
    matching kernel."""
    var = float(sigma) ** 2
    if var <= 0.5:
        return np.array([var / 2, 1 - var, var / 2], np.float32)
    h = int(np.ceil(3.5 * sigma))
    g = np.exp(-0.5 * (np.arange(-h, h + 1) / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def matching_kernels(fwhm: Sequence[float] | None, n: int, match_sigma: float) -> list[np.ndarray]:
    """The kernels taking each of n inputs of PSF FWHM ``fwhm`` (pixels; None: all equal) to
    the common width ``sqrt(max sigma_i^2 + match_sigma^2)``."""
    if fwhm is None:
        return [matching_kernel(match_sigma)] * n
    sig2 = (np.asarray(fwhm, float) / FWHM_PER_SIGMA) ** 2
    if len(sig2) != n or not np.all(np.isfinite(sig2)):
        raise ValueError(f"need {n} finite PSF FWHM values, got {list(fwhm)}")
    target = sig2.max() + match_sigma**2
    return [matching_kernel(np.sqrt(target - s)) for s in sig2]


def reject_outliers(
    images: np.ndarray,
    weights: np.ndarray,
    config: CombineConfig = CombineConfig(),
    variances: np.ndarray | None = None,
    fwhm: Sequence[float] | None = None,
) -> np.ndarray:
    """Pixels of each input whose PSF-matched copy deviates from the median of the matched
    copies beyond the noise model (module docstring).

    Args:
        images: (n, ny, nx) warped fluxes (NaN: no data); weights: (n, ny, nx) inverse
            variance (0: no data); variances: (n, ny, nx) total variance (source noise
            included) for the noise model, default ``1 / weights``; fwhm: n PSF FWHM of the
            warped inputs, pixels (None: equal PSFs).

    Returns:
        (n, ny, nx) bool, True where rejected (grown by ``config.grow``).
    """
    n, ny, nx = images.shape
    img = np.asarray(images, np.float32)
    wht = np.asarray(weights, np.float32)
    if variances is None:
        with np.errstate(divide="ignore"):
            var = np.where(wht > 0, 1.0 / wht, np.inf).astype(np.float32)
    else:
        var = np.asarray(variances, np.float32)
    matched, mvar, missing = (np.empty(img.shape, np.float32) for _ in range(3))
    tmp = np.empty((6, ny, nx), np.float32)
    kernels = matching_kernels(fwhm, n, config.match_sigma)
    for i, k in enumerate(kernels):
        matched_convolution(
            img[i], wht[i], var[i], k, matched[i], mvar[i], missing[i], tmp,
            config.min_kernel_weight,
        )  # fmt: skip
    flagged = np.zeros(img.shape, bool)
    med, med_var, med_miss = (np.empty((ny, nx), np.float32) for _ in range(3))
    median_frame(matched, mvar, missing, config.min_inputs, med, med_var, med_miss)
    reject_pixels(
        matched, mvar, missing, med, med_var, med_miss, config.nsigma, config.ampfrac,
        config.width_tol, config.shift_tol, flagged,
    )  # fmt: skip
    valid = (wht > 0) & np.isfinite(img)
    out = np.zeros(img.shape, bool)
    psf_var = np.ones(n) if fwhm is None else (np.asarray(fwhm, float) / FWHM_PER_SIGMA) ** 2
    seeing = (psf_var, config.seeing_tol, config.seeing_snr)
    for i, k in enumerate(kernels):
        if not flagged[i].any():
            continue
        core = np.zeros(flagged[i].shape, bool)
        localise(flagged[i], matched[i], len(k) // 2, config.localise, core)
        outside_others(img, var, flagged, i, config.raw_margin, core, *seeing)
        grown = np.zeros(core.shape, bool)
        grow_mask(
            core, valid[i], config.grow, img, var, flagged, i, config.grow_margin, grown, *seeing
        )
        fill_holes(grown, valid[i], out[i])
    return out


#: Rows of the tile per rejection step (bounds the temporaries to n x STRIP_ROWS x nx).
STRIP_ROWS = 256


def reject_in_strips(
    img: np.ndarray,
    wht: np.ndarray,
    var: np.ndarray | None,
    config: CombineConfig,
    fwhm: Sequence[float] | None,
) -> np.ndarray:
    """:func:`reject_outliers` strip by strip, each with a margin covering the matching
    kernels and the ``grow`` neighbourhood, so the result equals the whole-tile one at a
    fraction of the memory."""
    n, ny, nx = img.shape
    half = max(len(k) for k in matching_kernels(fwhm, n, config.match_sigma)) // 2
    margin = 2 * half + config.grow + 1
    out = np.zeros(img.shape, bool)
    for y0 in range(0, ny, STRIP_ROWS):
        y1 = min(y0 + STRIP_ROWS, ny)
        a, b = max(y0 - margin, 0), min(y1 + margin, ny)
        part = reject_outliers(
            img[:, a:b], wht[:, a:b], config, None if var is None else var[:, a:b], fwhm
        )
        out[:, y0:y1] = part[:, y0 - a : y1 - a]
    return out


def combine(
    images: Sequence[np.ndarray] | np.ndarray,
    weights: Sequence[np.ndarray] | np.ndarray,
    exptimes: Sequence[float],
    config: CombineConfig = CombineConfig(),
    variances: Sequence[np.ndarray] | np.ndarray | None = None,
    fwhm: Sequence[float] | None = None,
    rejected: np.ndarray | None = None,
) -> Coadd:
    """Median frame of PSF-matched copies, outlier rejection and inverse-variance weighted
    mean of warped inputs.

    Args:
        images: n arrays (ny, nx) of flux on the common zero-point (NaN: no data).
        weights: n arrays (ny, nx) of inverse variance (0: no data), without the sources'
            own noise (background weights, SWarp ``WEIGHT_TYPE BACKGROUND``): weights that
            include it favour the input where a star is faintest and bias fluxes low.
        exptimes: n exposure times, s (for the exposure-time map).
        variances: n arrays of total variance for the rejection (:func:`reject_outliers`).
        fwhm: n PSF FWHM of the warped inputs, tile pixels (None: taken as equal).
        rejected: (n, ny, nx) bool rejection masks already computed
            (:func:`reject_outliers`), or None to compute them.

    Returns:
        :class:`Coadd`.

    Raises:
        ValueError: no input, inputs of different shapes or counts, or a FWHM missing.
    """
    if len({np.shape(a) for a in (*images, *weights)}) > 1:
        raise ValueError("combine needs n >= 1 images and weights of one shape, n exptimes")
    img = np.ascontiguousarray(images, dtype=np.float32)
    wht = np.ascontiguousarray(weights, dtype=np.float32)
    if img.ndim != 3 or img.shape != wht.shape or len(exptimes) != len(img) or not len(img):
        raise ValueError("combine needs n >= 1 images and weights of one shape, n exptimes")
    var = None if variances is None else np.ascontiguousarray(variances, dtype=np.float32)
    if rejected is None:
        rejected = reject_in_strips(img, wht, var, config, fwhm)
    elif rejected.shape != img.shape:
        raise ValueError("rejection masks must have the shape of the input stack")
    if config.trail_length > 0:
        mask_trails(rejected, (wht > 0) & np.isfinite(img), config.trail_length)
    shape = img.shape[1:]
    mean, wsum = np.empty(shape, np.float32), np.empty(shape, np.float32)
    count, nrej = np.empty(shape, np.int16), np.empty(shape, np.int16)
    exptime = np.empty(shape, np.float32)
    exp = np.asarray(exptimes, np.float32)
    weighted_mean(img, wht, rejected, exp, mean, wsum, count, exptime, nrej)
    return Coadd(
        image=mean,
        weight=wsum,
        count=count,
        exptime=exptime,
        rejected=nrej,
        rejected_masks=rejected,
    )
