"""The PSF of a co-added tile and PSF homogenisation between bands (seed 002: PSF
homogenization before dual-mode photometry).

The tile PSF is an empirical stamp: the median of normalised, sub-pixel-recentred stamps of
bright isolated unsaturated stars (the method of DAOPHOT's empirical look-up table, Stetson
1987, without its analytic part). Homogenisation convolves each band to the worst PSF with a
Gaussian matching kernel of sigma ``sqrt(s_target^2 - s_band^2)``, exact for Gaussian PSFs
and accurate to the per-cent level in aperture colours for Moffat PSFs of beta >= 3 (the
approach of the J-PLUS/J-PAS pipelines, Cenarro et al. 2019, sect. 5.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from scipy import ndimage, optimize

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class PSFModel:
    """An empirical PSF stamp.

    Attributes:
        stamp: (n, n) float32, centred on pixel (n // 2, n // 2), sum 1.
        fwhm: FWHM, pixels (:func:`stamp_fwhm`).
        n_stars: stars stacked.
    """

    stamp: np.ndarray
    fwhm: float
    n_stars: int


def stamp_fwhm(stamp: np.ndarray) -> float:
    """FWHM (pixels) of a centred stamp: a circular Gaussian plus constant fitted by least
    squares (robust to the noise in the wings, unlike second moments)."""
    n = stamp.shape[0]
    y, x = np.mgrid[:n, :n] - n // 2
    r2 = (x**2 + y**2).ravel().astype(np.float64)
    data = np.asarray(stamp, np.float64).ravel()

    def resid(p: np.ndarray) -> np.ndarray:
        amp, sig, c = p
        return amp * np.exp(-0.5 * r2 / sig**2) + c - data

    p0 = np.array([max(data.max(), 1e-12), 1.5, 0.0])
    fit = optimize.least_squares(resid, p0, bounds=([0, 0.2, -np.inf], [np.inf, n, np.inf]))
    return float(abs(fit.x[1]) * FWHM_PER_SIGMA)


def psf_from_stars(
    image: np.ndarray,
    weight: np.ndarray,
    *,
    size: int = 25,
    max_stars: int = 50,
    saturation: float | None = None,
) -> PSFModel:
    """An empirical PSF stamp of a background-subtracted co-add.

    Args:
        image: (ny, nx) flux, background subtracted (NaN: no data); weight: inverse variance.
        size: stamp side, pixels (odd).
        max_stars: brightest isolated stars used.
        saturation: peak level above which a star is not used.

    Returns:
        :class:`PSFModel`.

    Raises:
        ValueError: no usable star was found.
    """
    size = size | 1
    data = np.ascontiguousarray(np.nan_to_num(image), dtype=np.float32)
    err = np.where(weight > 0, 1.0 / np.sqrt(np.maximum(weight, 1e-30)), 0.0).astype(np.float32)
    mask = weight <= 0
    objs = sep.extract(data, 20.0, err=err, mask=mask, minarea=5)
    half = size // 2
    ny, nx = data.shape
    ok = (
        (objs["flag"] == 0)
        & (objs["x"] > half + 1) & (objs["x"] < nx - half - 2)
        & (objs["y"] > half + 1) & (objs["y"] < ny - half - 2)
    )  # fmt: skip
    if saturation is not None:
        ok &= objs["peak"] < saturation
    # isolated: no other detection within a stamp size
    xy = np.column_stack([objs["x"], objs["y"]])
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    if len(objs) > 1:
        ok &= d.min(axis=1) > size
    idx = np.argsort(-objs["flux"])[: 4 * max_stars]
    stamps = []
    for i in idx:
        if not ok[i] or len(stamps) >= max_stars:
            continue
        x0, y0 = int(round(objs["x"][i])), int(round(objs["y"][i]))
        cut = data[y0 - half - 1 : y0 + half + 2, x0 - half - 1 : x0 + half + 2]
        if mask[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1].any():
            continue
        shifted = ndimage.shift(cut, (y0 - objs["y"][i], x0 - objs["x"][i]), order=3)
        st = shifted[1:-1, 1:-1]
        total = st.sum()
        if total > 0:
            stamps.append(st / total)
    if not stamps:
        raise ValueError("no isolated unsaturated star to build a PSF from")
    stamp = np.median(np.asarray(stamps), axis=0)
    stamp = (stamp / stamp.sum()).astype(np.float32)
    return PSFModel(stamp, stamp_fwhm(stamp), len(stamps))


def image_fwhm(image: np.ndarray, rms: np.ndarray | float, mask: np.ndarray | None = None) -> float:
    """PSF FWHM (pixels) of a background-subtracted single-epoch image, for the PSF matching of
    the rejection when the registry has none: twice the median half-light radius of isolated
    stars detected above 30 sigma (SExtractor ``FLUX_RADIUS``; for a Gaussian PSF r_50 =
    FWHM / 2).

    Args:
        image: (ny, nx) background-subtracted; rms: background noise (map or scalar);
        mask: bad pixels (True / nonzero) or None.

    Raises:
        ValueError: fewer than 3 usable stars.
    """
    data = np.ascontiguousarray(np.nan_to_num(image), dtype=np.float32)
    err = np.array(np.broadcast_to(np.asarray(rms, np.float32), data.shape))
    bad = None if mask is None else np.ascontiguousarray(mask != 0)
    objs = sep.extract(data, 30.0, err=err, mask=bad, minarea=5, deblend_cont=1.0)
    ny, nx = data.shape
    ok = (objs["flag"] == 0) & (objs["peak"] < 0.45 * objs["flux"])
    ok &= (objs["x"] > 10) & (objs["x"] < nx - 11)
    ok &= (objs["y"] > 10) & (objs["y"] < ny - 11)
    objs = objs[ok]
    if len(objs) > 1:
        d = np.hypot(objs["x"][:, None] - objs["x"][None], objs["y"][:, None] - objs["y"][None])
        np.fill_diagonal(d, np.inf)
        objs = objs[d.min(axis=1) > 15]
    if len(objs) < 3:
        raise ValueError("fewer than 3 isolated stars to measure the PSF FWHM on")
    r50, flag = sep.flux_radius(
        data, objs["x"], objs["y"], np.full(len(objs), 10.0), 0.5, mask=bad, subpix=5
    )
    r50 = r50[(flag == 0) & (r50 > 0)]
    if len(r50) < 3:
        raise ValueError("fewer than 3 isolated stars to measure the PSF FWHM on")
    return float(2.0 * np.median(r50))


def matching_sigma(fwhm: float, target_fwhm: float) -> float:
    """Sigma (pixels) of the Gaussian kernel that broadens a PSF of ``fwhm`` to
    ``target_fwhm`` (pixels); 0 when it is already as broad.
    """
    return float(np.sqrt(max(target_fwhm**2 - fwhm**2, 0.0)) / FWHM_PER_SIGMA)


def homogenise(image: np.ndarray, fwhm: float, target_fwhm: float) -> np.ndarray:
    """``image`` (ny, nx) convolved to the PSF FWHM ``target_fwhm`` (pixels) with a Gaussian
    matching kernel (NaN pixels count as 0). Flux is conserved."""
    sigma = matching_sigma(fwhm, target_fwhm)
    data = np.nan_to_num(image).astype(np.float32)
    if sigma < 0.05:
        return data
    return ndimage.gaussian_filter(data, sigma, mode="constant", truncate=5.0)
