"""Forced elliptical aperture photometry at reference positions (PAUdm memba's ``forced phot``
task, seed 000 section 6.1 item 3): pure numpy + sep, no database, no files.

Method (PAUS memba, Eriksen et al. 2019, MNRAS 484, 4200, sect. 2; Serrano et al. 2023,
MNRAS 523, 3287): each reference source's half-light ellipse (a, b, theta) is convolved with the
image PSF in the Gaussian approximation (sigma = r50 / 1.1774, sigma_psf = FWHM / 2.3548,
sigma_conv^2 = sigma^2 + sigma_psf^2 per axis) and the aperture is the ellipse of semi-axes
``k * sigma_conv`` that encloses the fraction ``f`` of that convolved Gaussian,
``k = sqrt(-2 ln(1 - f))`` (f = 0.625 in PAUS gives k = 1.40), never smaller than
``min_radius_fwhm`` FWHM (1.3) nor ``min_radius_pix`` pixels (2.5). Both floors are against
pixel phase: the simulated cameras sample the PSF with 1-2.5 pixels per FWHM, and an exact
aperture sum treats each pixel's flux as uniform, so the fraction of a star's flux inside a
small aperture depends on where the star falls within its pixel. For a Moffat (beta 3.5) PSF
of 1.06 / 1.3 / 1.6 pixels FWHM, a 1.3 FWHM radius scatters that fraction by 1.2 / 0.8 / 0.3 %
rms over sub-pixel positions, a 2.5-pixel radius by 0.01-0.08 % (measured on rendered stars);
the 1.3 FWHM floor alone left memba's bright-star pull width at 1.3-1.9 on sharp images.
An aperture correction measured on the image's bright point sources
(curve of growth from the forced circle to 4 FWHM, as the nightly zero-point is measured)
restores the total flux. The background is the sigma-clipped median (MAD rms) of an
elliptical annulus with the same axis ratio, from which pixels near any reference source and
masked pixels are removed. The light other reference sources put into an aperture is
subtracted (:mod:`surveydm.reduction.forced_blends`: a Moffat model of every source, fluxes
solved jointly per blend group; ``FLAG_BLENDED`` informational, ``FLAG_SATURATED_NEIGHBOUR``
where a saturated neighbour's light cannot be).
Flux and error: sep's exact elliptical sums; the variance is the weight map's (1 / weight) plus
the source's Poisson noise (electrons), the error of the background median, that of the
neighbour subtraction, that of the aperture correction and a relative floor (0.3 %) for
pixel-phase and PSF-shape errors; the calibration adds the image zero-point's error
(:func:`calibrated_error_njy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep
from astropy.wcs import WCS
from numba import njit
from scipy.spatial import cKDTree

from surveydm.reduction.forced_blends import moffat_beta_from_growth, subtract_neighbours
from surveydm.reduction.masks import MaskBit
from surveydm.reduction.photometry import PhotometryError
from surveydm.reduction.photometry import aperture_correction as growth_correction

#: Forced-photometry flags above the 16 mask bits (``flag`` = OR of mask bits | these).
FLAG_TRUNCATED = 1 << 16  #: the aperture leaves the image
FLAG_FEW_SKY = 1 << 17  #: fewer than ``min_annulus_pixels`` usable annulus pixels
FLAG_NO_DATA = 1 << 18  #: no usable pixel in the aperture
#: Informational (co-adds keep it): neighbours put more than ``blend_flag_fraction`` of the
#: source's flux into its aperture (subtracted, and their model error is in ``flux_err``).
FLAG_BLENDED = 1 << 19
#: A saturated neighbour's light reaches the aperture: it cannot be subtracted (its flux is
#: not measured), so the measurement is not co-added.
FLAG_SATURATED_NEIGHBOUR = 1 << 20

GAUSS_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM / sigma
GAUSS_R50 = math.sqrt(2.0 * math.log(2.0))  # r50 / sigma of a 2-D Gaussian


@dataclass(frozen=True)
class ForcedConfig:
    """Aperture and annulus sizing (units in the names; defaults: PAUS-like, module doc)."""

    enclosed_fraction: float = 0.625
    min_radius_fwhm: float = 1.3  #: pixel-phase errors of undersampled PSFs (module doc)
    min_radius_pix: float = 2.5  #: the same for PSFs of 1-2 pixels FWHM (module doc)
    annulus_inner: float = 2.5  #: inner semi-major axis / aperture semi-major axis
    annulus_min_gap_fwhm: float = 2.0  #: inner edge at least this far outside the aperture
    annulus_width_pix: float = 6.0
    neighbour_mask_scale: float = 2.0  #: mask sources within this times their aperture
    clip_sigma: float = 3.0
    min_annulus_pixels: int = 20
    correction_radius_fwhm: float = 4.0
    correction_min_snr: float = 50.0
    relative_error_floor: float = 0.003  #: added in quadrature (pixel phase, PSF model)
    subtract_neighbours: bool = True  #: neighbours' modelled light out (forced_blends)
    blend_model_error: float = 0.05  #: relative error of the subtracted light
    blend_flag_fraction: float = 0.1  #: FLAG_BLENDED above this neighbour light / flux
    flag_saturated_neighbours: bool = True  #: FLAG_SATURATED_NEIGHBOUR where one couples


@dataclass(frozen=True)
class ForcedApertures:
    """Forced photometry of n sources on one image (arrays of length n; pixels 0-based).

    Attributes:
        x, y: centres; a, b: aperture semi-axes, pixel; theta: angle from +x, rad.
        a_in, a_out, b_in, b_out: annulus semi-axes, pixel.
        bkg_median, bkg_sigma: e-/pixel (NaN when too few pixels); bkg_samples: count.
        flux, flux_err: aperture-corrected flux, e- (NaN without data).
        flag: int64 OR of mask bits in the aperture | ``FLAG_*``.
        aperture_correction: multiplied into every flux (1 when no star measured it).
    """

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    a_in: np.ndarray
    a_out: np.ndarray
    b_in: np.ndarray
    b_out: np.ndarray
    bkg_median: np.ndarray
    bkg_sigma: np.ndarray
    bkg_samples: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    flag: np.ndarray
    aperture_correction: float

    def __len__(self) -> int:
        return len(self.x)


def aperture_axes(
    a_pix: np.ndarray, b_pix: np.ndarray, fwhm_pix: float, config: ForcedConfig = ForcedConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes (pixel) of the forced apertures for half-light semi-axes ``a_pix, b_pix``
    (pixel, 0 for point sources) on an image of PSF FWHM ``fwhm_pix`` (module doc).

    Raises:
        ValueError: ``fwhm_pix`` not positive or the enclosed fraction not in (0, 1).
    """
    if not fwhm_pix > 0:
        raise ValueError(f"the PSF FWHM must be > 0 pixels, got {fwhm_pix}")
    f = config.enclosed_fraction
    if not 0 < f < 1:
        raise ValueError(f"enclosed_fraction must be in (0, 1), got {f}")
    k = math.sqrt(-2.0 * math.log(1.0 - f))
    s_psf = fwhm_pix / GAUSS_FWHM
    big = k * np.hypot(np.asarray(a_pix, float) / GAUSS_R50, s_psf)
    small = k * np.hypot(np.asarray(b_pix, float) / GAUSS_R50, s_psf)
    floor = max(config.min_radius_fwhm * fwhm_pix, config.min_radius_pix)
    return np.maximum(big, floor), np.maximum(small, floor)


def forced_photometry(
    science: np.ndarray,
    weight: np.ndarray,
    mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    a_pix: np.ndarray,
    b_pix: np.ndarray,
    theta: np.ndarray,
    fwhm_pix: float,
    point_source: np.ndarray,
    config: ForcedConfig = ForcedConfig(),
) -> ForcedApertures:
    """Forced elliptical aperture photometry at (x, y) on one reduced CCD (module doc).

    Args:
        science: (ny, nx) float32, electrons (background-subtracted or not: the annulus
            median is subtracted). weight: (ny, nx) inverse variance, e-^-2, 0 where unusable.
        mask: (ny, nx) uint16 mask bits (:class:`~surveydm.reduction.masks.MaskBit`).
        x, y: (n,) 0-based pixel centres; a_pix, b_pix: (n,) half-light semi-axes, pixel;
        theta: (n,) major-axis angle from +x, rad; point_source: (n,) bool (measure the
        aperture correction on the bright ones).

    Raises:
        ValueError: arrays of different shapes or lengths, or a bad FWHM.
    """
    science = np.ascontiguousarray(science, dtype=np.float32)
    if weight.shape != science.shape or mask.shape != science.shape:
        raise ValueError(
            f"science {science.shape}, weight {weight.shape} and mask {mask.shape} must match"
        )
    x, y, theta = (np.asarray(v, float) for v in (x, y, theta))
    theta = (theta + math.pi / 2) % math.pi - math.pi / 2  # sep wants [-pi/2, pi/2)
    n = len(x)
    if not all(len(np.atleast_1d(v)) == n for v in (y, a_pix, b_pix, theta, point_source)):
        raise ValueError("x, y, a_pix, b_pix, theta and point_source must have equal lengths")
    ap_a, ap_b = aperture_axes(a_pix, b_pix, fwhm_pix, config)
    a_in = np.maximum(config.annulus_inner * ap_a, ap_a + config.annulus_min_gap_fwhm * fwhm_pix)
    ratio = ap_b / ap_a
    a_out = a_in + config.annulus_width_pix / np.sqrt(ratio)
    bad = (mask != 0) | ~(weight > 0) | ~np.isfinite(science)
    sky, skip = _annulus_stats(science, bad, x, y, ap_a, ap_b, theta, a_in, a_out, config)
    var = np.where(bad, 0.0, 1.0 / np.where(weight > 0, weight, 1.0)).astype(np.float32)
    data = np.where(bad, 0.0, science).astype(np.float32)
    raw, raw_var, flag = _sum_apertures(data, var, bad, mask, x, y, ap_a, ap_b, theta)
    area = math.pi * ap_a * ap_b
    bkg = np.nan_to_num(sky.median)
    flux = raw - bkg * area
    n_sky = np.maximum(sky.samples, 1)
    err2 = (
        raw_var
        + np.maximum(flux, 0.0)
        + (area * np.nan_to_num(sky.sigma)) ** 2 * (math.pi / 2 / n_sky)
    )
    flag |= np.where(sky.samples < config.min_annulus_pixels, FLAG_FEW_SKY, 0)
    snr = flux / np.sqrt(np.maximum(err2, 1e-30))
    corr, corr_rel = aperture_correction(
        data, bad, x, y, ap_b, snr, flag, bkg, fwhm_pix, point_source, config
    )
    if config.subtract_neighbours and n > 1:
        stars = correction_stars(x, y, snr, flag, fwhm_pix, point_source, config)
        beta = moffat_beta_from_growth(
            data, bad, x[stars], y[stars], float(np.nanmedian(bkg)), fwhm_pix
        )
        nb = subtract_neighbours(
            skip, x, y, ap_a, ap_b, theta, a_in, a_out, np.asarray(a_pix, float),
            np.asarray(b_pix, float), flux, err2, fwhm_pix, beta, config.blend_model_error,
            unmeasured=(flag & (MaskBit.SATURATED | MaskBit.BLEED)) != 0,
        )  # fmt: skip
        flux = flux - nb.light
        err2 = err2 + nb.variance
        blended = np.abs(nb.light) > config.blend_flag_fraction * np.abs(flux)
        flag |= np.where(blended, FLAG_BLENDED, 0)
        if config.flag_saturated_neighbours:
            flag |= np.where(nb.unreliable, FLAG_SATURATED_NEIGHBOUR, 0)
    # the correction's error is common to the image's sources; the floor covers pixel-phase
    # and PSF-shape errors that a noise model does not (measured: tests/test_memba_pipeline.py)
    err2 = err2 + flux**2 * (corr_rel**2 + config.relative_error_floor**2)
    nodata = (flag & FLAG_NO_DATA) != 0
    return ForcedApertures(
        x=x, y=y, a=ap_a, b=ap_b, theta=theta, a_in=a_in, a_out=a_out,
        b_in=a_in * ratio, b_out=a_out * ratio, bkg_median=sky.median, bkg_sigma=sky.sigma,
        bkg_samples=sky.samples, flux=np.where(nodata, np.nan, flux * corr),
        flux_err=np.where(nodata, np.nan, np.sqrt(err2) * corr), flag=flag,
        aperture_correction=corr,
    )  # fmt: skip


@dataclass(frozen=True)
class _Sky:
    median: np.ndarray
    sigma: np.ndarray
    samples: np.ndarray


def _annulus_stats(
    science: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    ap_a: np.ndarray,
    ap_b: np.ndarray,
    theta: np.ndarray,
    a_in: np.ndarray,
    a_out: np.ndarray,
    config: ForcedConfig,
) -> tuple[_Sky, np.ndarray]:
    """Sigma-clipped median and MAD rms of each elliptical annulus, with every reference
    source's neighbourhood (``neighbour_mask_scale`` x its aperture) and bad pixels removed;
    and the (ny, nx) bool map of those removed pixels."""
    near = np.zeros(science.shape, dtype=np.bool_)
    sep.mask_ellipse(near, x, y, ap_a, ap_b, theta, r=config.neighbour_mask_scale)
    skip = near | bad
    med, sig, cnt = _annulus_kernel(
        science, skip, x, y, np.cos(theta), np.sin(theta), ap_b / ap_a, a_in, a_out,
        float(config.clip_sigma),
    )  # fmt: skip
    return _Sky(med, sig, cnt), skip


@njit(cache=True, nogil=True)
def _annulus_kernel(science, skip, x, y, cos_t, sin_t, ratio, a_in, a_out, nsigma):  # noqa: ANN001, ANN202
    """Per source: the unskipped pixels whose centre lies in the elliptical annulus (semi-major
    axes a_in..a_out, axis ratio ``ratio``), then :func:`_clipped_kernel`."""
    ny, nx = science.shape
    n = x.shape[0]
    med = np.full(n, np.nan)
    sig = np.full(n, np.nan)
    cnt = np.zeros(n, np.int64)
    size = 16
    for i in range(n):
        size = max(size, int(4 * (a_out[i] + 3) ** 2))
    buf = np.empty(size, np.float64)
    for i in range(n):
        r = a_out[i] + 1
        x0, x1 = max(int(x[i] - r), 0), min(int(x[i] + r) + 2, nx)
        y0, y1 = max(int(y[i] - r), 0), min(int(y[i] + r) + 2, ny)
        lo, hi = a_in[i] ** 2, a_out[i] ** 2
        k = 0
        for yy in range(y0, y1):
            dy = yy - y[i]
            for xx in range(x0, x1):
                if skip[yy, xx]:
                    continue
                dx = xx - x[i]
                u = dx * cos_t[i] + dy * sin_t[i]
                v = (-dx * sin_t[i] + dy * cos_t[i]) / ratio[i]
                r2 = u * u + v * v
                if r2 >= lo and r2 <= hi:
                    buf[k] = science[yy, xx]
                    k += 1
        med[i], sig[i], cnt[i] = _clipped_kernel(buf[:k].copy(), nsigma, 5)
    return med, sig, cnt


@njit(cache=True, nogil=True)
def _clipped_kernel(vals, nsigma, iters):  # noqa: ANN001, ANN202
    """Median, MAD rms (1.4826 x MAD) and count of ``vals`` after iterative ``nsigma``
    clipping about the median (at most ``iters`` passes; NaN below 3 values)."""
    if vals.size < 3:
        return np.nan, np.nan, vals.size
    keep = vals
    for _ in range(iters):
        m = np.median(keep)
        sd = 1.4826 * np.median(np.abs(keep - m))
        if sd <= 0:
            break
        new = keep[np.abs(keep - m) <= nsigma * sd]
        if new.size == keep.size or new.size < 3:
            break
        keep = new
    m = np.median(keep)
    return m, 1.4826 * np.median(np.abs(keep - m)), keep.size


def _sum_apertures(
    data: np.ndarray,
    var: np.ndarray,
    bad: np.ndarray,
    mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact elliptical sums (sep, exact pixel overlap) of data and variance, and flags: the
    mask bits of the pixels whose centre is inside each aperture, truncation, no data."""
    flux, err, _ = sep.sum_ellipse(data, x, y, a, b, theta, r=1.0, var=var, subpix=0)
    ny, nx = data.shape
    out = (x - a < -0.5) | (x + a > nx - 0.5) | (y - a < -0.5) | (y + a > ny - 0.5)
    flag = np.where(out, FLAG_TRUNCATED, 0).astype(np.int64)
    bits, good = _aperture_flags_kernel(mask, bad, x, y, a, b, np.cos(theta), np.sin(theta))
    flag |= bits | np.where(good <= 0, FLAG_NO_DATA, 0)
    return np.asarray(flux, float), np.asarray(err, float) ** 2, flag


@njit(cache=True, nogil=True)
def _aperture_flags_kernel(mask, bad, x, y, a, b, cos_t, sin_t):  # noqa: ANN001, ANN202
    """Per aperture: OR of ``mask`` over the pixels whose centre is inside the ellipse, and
    the number of those pixels not ``bad``."""
    ny, nx = mask.shape
    n = x.shape[0]
    bits = np.zeros(n, np.int64)
    good = np.zeros(n, np.int64)
    for i in range(n):
        x0, x1 = max(int(math.floor(x[i] - a[i])), 0), min(int(math.ceil(x[i] + a[i])) + 1, nx)
        y0, y1 = max(int(math.floor(y[i] - a[i])), 0), min(int(math.ceil(y[i] + a[i])) + 1, ny)
        acc, k = 0, 0
        for yy in range(y0, y1):
            dy = yy - y[i]
            for xx in range(x0, x1):
                dx = xx - x[i]
                u = (dx * cos_t[i] + dy * sin_t[i]) / a[i]
                v = (-dx * sin_t[i] + dy * cos_t[i]) / b[i]
                if u * u + v * v <= 1.0:
                    acc |= mask[yy, xx]
                    if not bad[yy, xx]:
                        k += 1
        bits[i], good[i] = acc, k
    return bits, good


def aperture_correction(
    data: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    snr: np.ndarray,
    flag: np.ndarray,
    bkg: np.ndarray,
    fwhm_pix: float,
    point_source: np.ndarray,
    config: ForcedConfig = ForcedConfig(),
) -> tuple[float, float]:
    """(factor, relative error) of the total over forced-aperture flux of the image's point
    sources: the curve-of-growth factor of
    :func:`surveydm.reduction.photometry.aperture_correction` (Stetson 1990) from the forced
    circle to ``correction_radius_fwhm`` FWHM (4, as the nightly zero-point uses, so the light
    it leaves out is in the zero-point), over unflagged point sources with S/N >
    ``correction_min_snr`` and no other source within that radius + 2 pixels, the background
    being the median of all the annuli (a bright star's own annulus holds its PSF wings);
    (1.0, 0.0) when fewer than 3 such stars."""
    total = config.correction_radius_fwhm * fwhm_pix
    idx = correction_stars(x, y, snr, flag, fwhm_pix, point_source, config)
    r = float(np.median(radius[idx])) if idx.size else 0.0
    if idx.size < 3 or not 0 < r < total:
        return 1.0, 0.0
    try:
        ac = growth_correction(
            data, x[idx], y[idx], radius=r, total_radius=total,
            background=float(np.nanmedian(bkg)), mask=bad.astype(np.uint8),
        )  # fmt: skip
    except PhotometryError:
        return 1.0, 0.0
    if ac.n_stars < 3 or not np.isfinite(ac.factor):
        return 1.0, 0.0
    rel = float(ac.error) * math.log(10) / 2.5 if np.isfinite(ac.error) else 0.0
    return float(ac.factor), rel


def correction_stars(
    x: np.ndarray,
    y: np.ndarray,
    snr: np.ndarray,
    flag: np.ndarray,
    fwhm_pix: float,
    point_source: np.ndarray,
    config: ForcedConfig = ForcedConfig(),
) -> np.ndarray:
    """Indices of the unflagged point sources with S/N > ``correction_min_snr`` and no other
    source within ``correction_radius_fwhm`` FWHM + 2 pixels (those that measure the aperture
    correction and the PSF's curve of growth)."""
    total = config.correction_radius_fwhm * fwhm_pix
    good = np.asarray(point_source, bool) & (flag == 0) & (snr > config.correction_min_snr)
    if good.sum() < 2:
        return np.flatnonzero(good)
    xy = np.column_stack([x, y])
    dist, _ = cKDTree(xy).query(xy[good], k=2)
    return np.flatnonzero(good)[dist[:, 1] > total + 2.0]


@dataclass(frozen=True)
class PixelEllipses:
    """Reference ellipses on an image (arrays of length n): 0-based ``x, y``; half-light
    semi-axes ``a, b`` in pixels; ``theta`` rad from +x towards +y, in [-pi/2, pi/2)."""

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray


def sky_to_pixel_ellipses(
    wcs: WCS,
    ra: np.ndarray,
    dec: np.ndarray,
    a_arcsec: np.ndarray,
    b_arcsec: np.ndarray,
    pa_deg: np.ndarray,
) -> PixelEllipses:
    """Project sky ellipses (position angle east of north) onto an image with ``wcs`` (local
    linear approximation: the CD matrix at the reference pixel)."""
    x, y = wcs.all_world2pix(np.asarray(ra, float), np.asarray(dec, float), 0)
    cd = wcs.wcs.cd if wcs.wcs.has_cd() else wcs.pixel_scale_matrix
    inv = np.linalg.inv(cd)
    pa = np.radians(np.asarray(pa_deg, float))
    vec = inv @ np.stack([np.sin(pa), np.cos(pa)])  # (dRA*cos dec, dDec) east, north
    scale = float(np.sqrt(abs(np.linalg.det(cd)))) * 3600.0  # arcsec / pixel
    return PixelEllipses(
        np.asarray(x, float), np.asarray(y, float),
        np.asarray(a_arcsec, float) / scale, np.asarray(b_arcsec, float) / scale,
        (np.arctan2(vec[1], vec[0]) + math.pi / 2) % math.pi - math.pi / 2,
    )  # fmt: skip


def calibrated_flux_njy(flux_e: np.ndarray, exptime: float, zeropoint: float) -> np.ndarray:
    """Flux in nJy from electrons with the image's zero-point ``zeropoint`` (AB mag of 1 e-/s):
    AB mag = zeropoint - 2.5 log10(flux_e / exptime) and AB mag = 31.4 - 2.5 log10(nJy).

    Raises:
        ValueError: ``exptime`` not positive.
    """
    if not exptime > 0:
        raise ValueError(f"exposure time must be > 0 s, got {exptime}")
    return np.asarray(flux_e, float) / exptime * 10 ** (-0.4 * (zeropoint - 31.4))


def calibrated_error_njy(
    flux_e: np.ndarray, flux_err_e: np.ndarray, exptime: float, zeropoint: float, zp_err: float
) -> np.ndarray:
    """Error (nJy) of :func:`calibrated_flux_njy`: the measurement error ``flux_err_e`` (e-)
    and the zero-point's ``zp_err`` (mag; common to an image's sources, independent between
    epochs, so it belongs in each epoch's error before a co-add) in quadrature:
    ``sigma^2 = sigma_e^2 + (0.4 ln 10 zp_err flux)^2``.

    Raises:
        ValueError: ``exptime`` not positive or ``zp_err`` negative.
    """
    if not zp_err >= 0:
        raise ValueError(f"zero-point error must be >= 0 mag, got {zp_err}")
    flux_e, flux_err_e = np.asarray(flux_e, float), np.asarray(flux_err_e, float)
    total = np.hypot(flux_err_e, 0.4 * math.log(10) * zp_err * flux_e)
    return calibrated_flux_njy(total, exptime, zeropoint)
