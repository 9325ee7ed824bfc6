"""Cosmic-ray detection: a compiled sharpness test against the PSF, and astroscrappy.

:func:`find_cosmic_rays` is the pipeline's method. A pixel is a cosmic-ray hit when, along at
least one of four directions (the two axes and the two diagonals), its second difference
``2 p - n1 - n2`` exceeds what the PSF allows for a star whose pixel holds ``p - sky``, by
``sigclip`` standard deviations of that difference. This is the condition of the SDSS and Rubin
cosmic-ray finders (Lupton et al. 2001, ASP Conf. Ser. 238, 269, "condition 3"; Rubin
``meas_algorithms`` ``findCosmicRays``): a hit is sharper than the PSF in some direction, a
star never is. The PSF's largest second difference per unit of pixel flux (``k``) is computed
from the pixel-integrated Moffat PSF over every sub-pixel centring (:func:`psf_sharpness`),
so that a 2-3 pixel track on a ~2 pixel FWHM image (as sharp as a star along the track, a
delta across it) is found while star cores are not. Hits are then grown, as L.A.Cosmic does
(van Dokkum 2001, PASP 113, 1420, "sigfrac"), into neighbouring pixels that pass the same test
at ``sigfrac * sigclip``; hit pixels are cleaned by
the mean of the good pixels in their 5x5 box (astroscrappy's ``meanmask``). One compiled pass
over the pixels (numba): ~50-100 times astroscrappy's speed (``benchmarks/bench_cosmics.py``).

:func:`find_cosmic_rays_lacosmic` runs astroscrappy (L.A.Cosmic, van Dokkum 2001; McCully et
al. 2018), kept as the reference the benchmark compares with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import astroscrappy
import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, error_model="numpy")

#: The PSF is taken this much narrower than measured (its change across the CCD, the
#: measurement's error) when its sharpness bound is computed.
PSF_FWHM_MARGIN = 0.85


@lru_cache(maxsize=64)
def psf_sharpness(fwhm_pix: float, beta: float = 2.5, n_offsets: int = 9) -> tuple[float, float]:
    """Largest second difference of a star per unit of its pixel's flux, ``(k_axis, k_diag)``.

    ``k = max (2 p - n1 - n2) / p`` over the pixels holding >= 1 % of the peak of a
    pixel-integrated Moffat PSF (Moffat 1969, A&A 3, 455; 5x5 sub-pixel integration) centred at
    ``n_offsets**2`` sub-pixel positions; ``n1, n2`` are the pixel's neighbours along the axes
    (``k_axis``) or the diagonals (``k_diag``). A star obeys ``2 p - n1 - n2 <= k (p - sky)``;
    a cosmic-ray pixel with empty neighbours gives 2.

    Args:
        fwhm_pix: PSF FWHM, pixels (> 0); beta: Moffat beta (> 1).

    Raises:
        ValueError: ``fwhm_pix`` or ``beta`` out of range.
    """
    if not (fwhm_pix > 0 and beta > 1):
        raise ValueError(f"need fwhm_pix > 0 and beta > 1, got {fwhm_pix}, {beta}")
    alpha = fwhm_pix / (2.0 * math.sqrt(2 ** (1.0 / beta) - 1.0))
    half, ov = max(3, int(math.ceil(2 * fwhm_pix))), 5
    sub = (np.arange((2 * half + 1) * ov) - ((2 * half + 1) * ov - 1) / 2.0) / ov
    k_axis = k_diag = 0.0
    for fy in np.linspace(-0.5, 0.5, n_offsets):
        for fx in np.linspace(-0.5, 0.5, n_offsets):
            r2 = (sub[:, None] - fy) ** 2 + (sub[None, :] - fx) ** 2
            prof = (1.0 + r2 / alpha**2) ** (-beta)
            s = 2 * half + 1
            p = prof.reshape(s, ov, s, ov).sum(axis=(1, 3))
            c = p[1:-1, 1:-1]
            good = c >= 0.01 * p.max()
            ax = np.maximum(2 * c - p[1:-1, :-2] - p[1:-1, 2:], 2 * c - p[:-2, 1:-1] - p[2:, 1:-1])
            dg = np.maximum(2 * c - p[:-2, :-2] - p[2:, 2:], 2 * c - p[:-2, 2:] - p[2:, :-2])
            k_axis = max(k_axis, float((ax[good] / c[good]).max()))
            k_diag = max(k_diag, float((dg[good] / c[good]).max()))
    return k_axis, k_diag


def find_cosmic_rays(
    image_e: np.ndarray,
    *,
    read_noise: float | Mapping[int, float],
    gain: float = 1.0,
    saturation_level: float = np.inf,
    mask: np.ndarray | None = None,
    sky: np.ndarray | float | None = None,
    psf_fwhm: float | None = None,
    psf_beta: float = 2.5,
    sigclip: float = 5.0,
    sigfrac: float = 0.5,
    niter: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect and clean cosmic-ray hits by their sharpness against the PSF (module doc).

    Args:
        image_e: (ny, nx) detrended image, sky included (e- when ``gain`` is 1).
        read_noise: read noise in e- (scalar, or amplifier -> e-: the mean is used).
        gain: e- per image unit (1.0 for images in electrons).
        saturation_level: pixels at or above it (image units) are never taken for hits.
        mask: optional bool or bit mask of pixels to ignore (bad, saturated, bleed); they
            are neither tested nor used as neighbours nor in the cleaning.
        sky: the sky level (image units): a (ny, nx) background map, a scalar, or None for
            the median of the image.
        psf_fwhm: PSF FWHM, pixels (None: 2.0, the sharpest PSF the survey cameras give);
            psf_beta: its Moffat beta.
        sigclip: detection threshold, standard deviations of the second difference beyond the
            PSF's bound (Poisson + read noise of the three pixels).
        sigfrac: the growth into neighbours uses ``sigfrac * sigclip``.
        niter: growth passes (each reaches one more pixel from the hits found so far).

    Returns:
        (mask, cleaned): (ny, nx) bool cosmic-ray mask and float32 cleaned image (hit pixels
        replaced by the mean of the good pixels of their 5x5 box).

    Raises:
        ValueError: ``image_e`` is not 2-d, or ``mask`` / ``sky`` do not match its shape.
    """
    img = np.ascontiguousarray(image_e, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-d, got shape {img.shape}")
    bad = np.zeros(img.shape, bool) if mask is None else (np.asarray(mask) != 0)
    if bad.shape != img.shape:
        raise ValueError(f"mask has shape {bad.shape}, image {img.shape}")
    bad = bad | ~np.isfinite(img) | (img >= saturation_level)
    if sky is None:
        sky = float(np.median(img[::4, ::4]))
    sky_map = np.broadcast_to(np.asarray(sky, dtype=np.float32), img.shape)
    if sky_map.shape != img.shape:
        raise ValueError(f"sky has shape {np.shape(sky)}, image {img.shape}")
    rn = (
        float(np.mean(list(read_noise.values())))
        if isinstance(read_noise, Mapping)
        else float(read_noise)
    )
    fwhm = float(psf_fwhm) if psf_fwhm and np.isfinite(psf_fwhm) else 2.0
    k_axis, k_diag = psf_sharpness(round(fwhm * PSF_FWHM_MARGIN, 2), round(float(psf_beta), 2))
    hits = np.zeros(img.shape, np.uint8)
    _detect(img, sky_map, bad, hits, k_axis, k_diag, 1.0 / gain, (rn / gain) ** 2, sigclip)
    for _ in range(max(0, niter)):
        if _grow(img, sky_map, bad, hits, k_axis, k_diag, 1.0 / gain, (rn / gain) ** 2,
                 sigfrac * sigclip) == 0:  # fmt: skip
            break
    cleaned = img.copy()
    _clean(img, bad, hits, cleaned)
    return hits.view(bool), cleaned


@njit(**_JIT)
def _excess(img, sky, bad, y, x, k_axis, k_diag, inv_gain, rn2):
    """Largest significance, over the four directions, of the pixel's second difference beyond
    the PSF bound; -1 when no direction is usable."""
    ny, nx = img.shape
    p = img[y, x]
    s0 = sky[y, x]
    var_p = max(p, 0.0) * inv_gain + rn2
    best = -1.0
    for d in range(4):
        dy = 0 if d == 0 else 1
        dx = 1 if d == 0 else (0 if d == 1 else (1 if d == 2 else -1))
        y1, x1, y2, x2 = y - dy, x - dx, y + dy, x + dx
        if y1 < 0 or y2 >= ny or x1 < 0 or x2 < 0 or x1 >= nx or x2 >= nx:
            continue
        if bad[y1, x1] or bad[y2, x2]:
            continue
        n1 = img[y1, x1]
        n2 = img[y2, x2]
        k = k_axis if d < 2 else k_diag
        t = 2.0 * p - n1 - n2 - k * (p - s0)
        var = (2.0 - k) ** 2 * var_p
        var += max(n1, 0.0) * inv_gain + rn2 + max(n2, 0.0) * inv_gain + rn2
        z = t / math.sqrt(var)
        if z > best:
            best = z
    return best


@njit(**_JIT)
def _detect(img, sky, bad, hits, k_axis, k_diag, inv_gain, rn2, nsigma):
    """Flag (``hits`` = 1) every good pixel sharper than the PSF by ``nsigma``."""
    ny, nx = img.shape
    for y in range(1, ny - 1):
        for x in range(1, nx - 1):
            if bad[y, x]:
                continue
            p = img[y, x] - sky[y, x]
            # cheap bound first: the pixel must stand out of the sky at all
            if p * p < nsigma * nsigma * (max(sky[y, x], 0.0) * inv_gain + rn2):
                continue
            if _excess(img, sky, bad, y, x, k_axis, k_diag, inv_gain, rn2) > nsigma:
                hits[y, x] = 1


@njit(**_JIT)
def _grow(img, sky, bad, hits, k_axis, k_diag, inv_gain, rn2, nsigma):
    """One growth pass: flag good neighbours (8-connected) of hits that pass the test at
    ``nsigma`` (the hits themselves are not read as sky: a star core beside a hit would then
    look sharp). Returns the number of pixels added."""
    ny, nx = img.shape
    ys, xs = np.nonzero(hits)
    cand_y = []
    cand_x = []
    for i in range(ys.size):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                y, x = ys[i] + dy, xs[i] + dx
                if y < 1 or y >= ny - 1 or x < 1 or x >= nx - 1:
                    continue
                if hits[y, x] or bad[y, x]:
                    continue
                p = img[y, x] - sky[y, x]
                if p * p < nsigma * nsigma * (max(sky[y, x], 0.0) * inv_gain + rn2) or p <= 0:
                    continue
                if _excess(img, sky, bad, y, x, k_axis, k_diag, inv_gain, rn2) > nsigma:
                    cand_y.append(y)
                    cand_x.append(x)
    for j in range(len(cand_y)):
        hits[cand_y[j], cand_x[j]] = 1
    return len(cand_y)


@njit(**_JIT)
def _clean(img, bad, hits, out):
    """Replace hit pixels by the mean of the good, unhit pixels of their 5x5 box."""
    ny, nx = img.shape
    ys, xs = np.nonzero(hits)
    for i in range(ys.size):
        y, x = ys[i], xs[i]
        total, n = 0.0, 0
        for yy in range(max(0, y - 2), min(ny, y + 3)):
            for xx in range(max(0, x - 2), min(nx, x + 3)):
                if not hits[yy, xx] and not bad[yy, xx]:
                    total += img[yy, xx]
                    n += 1
        if n > 0:
            out[y, x] = total / n


def find_cosmic_rays_lacosmic(
    image_e: np.ndarray,
    *,
    read_noise: float | Mapping[int, float],
    gain: float = 1.0,
    saturation_level: float,
    mask: np.ndarray | None = None,
    sigclip: float = 4.5,
    sigfrac: float = 0.3,
    objlim: float = 5.0,
    niter: int = 1,
    cleantype: str = "meanmask",
    fsmode: str = "median",
    psf_fwhm: float | None = None,
    psf_beta: float = 2.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect and clean cosmic-ray hits with astroscrappy (the reference method).

    Args:
        image_e: (ny, nx) detrended image in electrons, sky included.
        read_noise: read noise in e- (scalar, or amplifier -> e-: the mean is used).
        gain: e- per image unit (1.0 for images in electrons).
        saturation_level: level (image units) above which stars are saturated; astroscrappy
            protects them from being taken for cosmic rays.
        mask: optional bool or bit mask of pixels to ignore (bad pixels, saturated).
        sigclip, sigfrac, objlim, niter, cleantype, fsmode: astroscrappy ``detect_cosmics``
            parameters (astroscrappy's defaults, except ``niter``).
        psf_fwhm: PSF FWHM in pixels. When given, the fine-structure image is built by
            convolving with a Moffat PSF of that width (``fsmode="convolve"``) instead of the
            median filter: with undersampled PSFs (FWHM < ~2 pixels) the median mode takes
            star cores for cosmic rays (van Dokkum 2001, section 3.3; astroscrappy docs).
        psf_beta: Moffat beta of that PSF.

    Returns:
        (mask, cleaned): (ny, nx) bool cosmic-ray mask and float32 cleaned image (e-).

    Raises:
        ValueError: ``image_e`` is not 2-d.
    """
    img = np.asarray(image_e, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-d, got shape {img.shape}")
    rn = (
        float(np.mean(list(read_noise.values())))
        if isinstance(read_noise, Mapping)
        else float(read_noise)
    )
    inmask = None if mask is None else (np.asarray(mask) != 0)
    psf = (
        {
            "fsmode": "convolve",
            "psfmodel": "moffat",
            "psffwhm": float(psf_fwhm),
            "psfbeta": float(psf_beta),
            "psfsize": max(5, 2 * int(np.ceil(psf_fwhm)) + 1),
        }
        if psf_fwhm
        else {"fsmode": fsmode}
    )
    crmask, cleaned = astroscrappy.detect_cosmics(
        img, inmask=inmask, sigclip=sigclip, sigfrac=sigfrac, objlim=objlim, gain=gain,
        readnoise=rn, satlevel=saturation_level, niter=niter, cleantype=cleantype,
        sepmed=True, **psf,
    )  # fmt: skip
    return np.asarray(crmask, dtype=bool), np.asarray(cleaned, dtype=np.float32)
