"""Photometric calibration of one CCD: zero-point, transparency and aperture correction.

Conventions: fluxes are electrons in the exposure; the zero-point ``zp`` is the AB magnitude of
a source giving 1 e-/s, so ``m_AB = zp - 2.5 log10(flux / exptime)``. The zero-point is the
sigma-clipped, inverse-variance weighted mean of ``m_ref - m_inst`` over matched bright,
unsaturated reference stars (the PAUdm "image zp" of seed 000 table B.2; Pan-STARRS' camera
stage, seed 004 section 3.4). Transparency compares it with the nominal (photometric-night)
zero-point corrected for atmospheric extinction at the observed airmass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep

from surveydm.errors import SurveydmError

__all__ = [
    "ApertureCorrection",
    "PhotometryError",
    "ZeroPoint",
    "aperture_correction",
    "fit_zeropoint",
    "instrumental_magnitude",
    "transparency",
]


class PhotometryError(SurveydmError):
    """Inputs to the photometric calibration are malformed (shapes, non-positive exptime)."""


@dataclass(frozen=True)
class ZeroPoint:
    """Result of :func:`fit_zeropoint`.

    Attributes:
        zp: AB magnitude of 1 e-/s (NaN when no star survives).
        zp_err: 1-sigma error of ``zp``: the weighted-mean error, scaled up by
            sqrt(reduced chi^2) when the scatter exceeds the quoted errors, mag.
        n_stars: stars used after clipping.
        rms: RMS of the used stars' ``m_ref - m_inst - zp``, mag.
        used: boolean mask over the input stars of those used.
        residuals: ``m_ref - m_inst - zp`` for every input star (NaN where undefined).
    """

    zp: float
    zp_err: float
    n_stars: int
    rms: float
    used: np.ndarray
    residuals: np.ndarray


def instrumental_magnitude(
    flux: np.ndarray, exptime: float, flux_err: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``-2.5 log10(flux / exptime)`` (e- and s) and its error ``1.0857 flux_err / flux``.

    Non-positive fluxes give NaN.
    """
    if not (exptime > 0 and math.isfinite(exptime)):
        raise PhotometryError(f"exptime must be positive seconds, got {exptime}")
    f = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(f > 0, -2.5 * np.log10(np.where(f > 0, f, 1.0) / exptime), np.nan)
        err = None
        if flux_err is not None:
            fe = np.asarray(flux_err, dtype=np.float64)
            err = np.where(f > 0, 2.5 / math.log(10.0) * fe / np.where(f > 0, f, 1.0), np.nan)
    return mag, err


def fit_zeropoint(
    instrumental: np.ndarray,
    reference_mag: np.ndarray,
    reference_err: np.ndarray | None = None,
    *,
    exptime: float,
    kind: str = "flux",
    instrumental_err: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    mag_range: tuple[float, float] | None = None,
    clip_sigma: float = 3.0,
    max_iterations: int = 10,
    error_floor: float = 0.005,
    min_stars: int = 3,
) -> ZeroPoint:
    """Robust zero-point from matched reference stars.

    Args:
        instrumental: (n,) fluxes in e- (``kind="flux"``) or instrumental magnitudes
            ``-2.5 log10(e-/s)`` (``kind="mag"``, exptime then only checked).
        reference_mag: (n,) reference AB magnitudes in the band (colour terms applied).
        reference_err: (n,) reference magnitude errors, or None.
        exptime: exposure time, s.
        kind: "flux" or "mag", the meaning of ``instrumental``.
        instrumental_err: (n,) errors of ``instrumental`` (e- for flux, mag for mag).
        weights: (n,) extra weights multiplying the inverse variances (e.g. 0 to drop a star).
        mag_range: (bright, faint) reference magnitude window (drop saturated / faint stars).
        clip_sigma: clipping threshold on the normalised residuals.
        max_iterations: clipping iterations.
        error_floor: added in quadrature to every star's error, mag.
        min_stars: fewer usable stars give ``zp = NaN`` with ``n_stars`` the count.

    Returns:
        :class:`ZeroPoint`.

    Raises:
        PhotometryError: mismatched lengths, non-positive exptime, unknown ``kind``.

    Method: iterative clipping about the weighted mean with a robust (MAD) scale of the
    normalised residuals, so outliers (variables, blends, mismatches) cannot drag the first
    estimate; the error is the weighted-mean error times max(1, sqrt(chi2_red)).
    """
    ref = np.asarray(reference_mag, dtype=np.float64)
    n = len(ref)
    if kind == "flux":
        inst, inst_err = instrumental_magnitude(instrumental, exptime, instrumental_err)
    elif kind == "mag":
        if not (exptime > 0 and math.isfinite(exptime)):
            raise PhotometryError(f"exptime must be positive seconds, got {exptime}")
        inst = np.asarray(instrumental, dtype=np.float64)
        inst_err = None if instrumental_err is None else np.asarray(instrumental_err, float)
    else:
        raise PhotometryError(f"kind must be 'flux' or 'mag', got {kind!r}")
    arrays = {
        "instrumental": inst,
        "reference_err": reference_err,
        "instrumental_err": inst_err,
        "weights": weights,
    }
    for name, arr in arrays.items():
        if arr is not None and len(arr) != n:
            raise PhotometryError(f"{name} has {len(arr)} values, reference_mag has {n}")
    var = np.full(n, error_floor**2)
    if reference_err is not None:
        var = var + np.asarray(reference_err, dtype=np.float64) ** 2
    if inst_err is not None:
        var = var + inst_err**2
    delta = ref - inst
    ok = np.isfinite(delta) & np.isfinite(var) & (var > 0)
    if mag_range is not None:
        ok &= (ref >= mag_range[0]) & (ref <= mag_range[1])
    w = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0)
    if weights is not None:
        w = w * np.asarray(weights, dtype=np.float64)
        ok &= w > 0
    if ok.sum() < min_stars:
        return ZeroPoint(math.nan, math.nan, int(ok.sum()), math.nan, ok, delta * np.nan)

    used = ok.copy()
    zp = float(np.median(delta[used]))
    for _ in range(max_iterations):
        zp = float(np.sum(w[used] * delta[used]) / np.sum(w[used]))
        norm = (delta - zp) / np.sqrt(var)
        scale = max(1.0, 1.4826 * float(np.median(np.abs(norm[used] - np.median(norm[used])))))
        new_used = ok & (np.abs(norm) <= clip_sigma * scale)
        if new_used.sum() < min_stars or np.array_equal(new_used, used):
            break
        used = new_used
    zp = float(np.sum(w[used] * delta[used]) / np.sum(w[used]))
    res = delta - zp
    nu = int(used.sum())
    err = 1.0 / math.sqrt(float(np.sum(w[used])))
    if nu > 1:
        chi2_red = float(np.sum(w[used] * res[used] ** 2)) / (nu - 1)
        err *= math.sqrt(max(1.0, chi2_red))
    rms = float(np.sqrt(np.mean(res[used] ** 2)))
    return ZeroPoint(zp, err, nu, rms, used, res)


def transparency(
    zp_measured: float,
    zp_nominal: float,
    extinction_coeff: float,
    airmass: float,
    *,
    max_value: float = 1.5,
) -> float:
    """Fraction of the light of a photometric night that reached the detector.

    ``10**(-0.4 * (zp_nominal - k * X - zp_measured))``: ``zp_nominal`` is the zero-point
    above the atmosphere (airmass 0) on a photometric night, ``k`` the extinction coefficient
    (mag/airmass), ``X`` the airmass. Clipped to [0, ``max_value``] (values a little above 1
    are measurement noise and kept; larger ones mean a wrong nominal zero-point); NaN input
    gives NaN.

    Raises:
        PhotometryError: airmass < 1 or negative extinction coefficient.
    """
    values = (zp_measured, zp_nominal, extinction_coeff, airmass)
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return math.nan
    if airmass < 1.0:
        raise PhotometryError(f"airmass must be >= 1, got {airmass}")
    if extinction_coeff < 0:
        raise PhotometryError(f"extinction coefficient must be >= 0, got {extinction_coeff}")
    t = 10.0 ** (-0.4 * (zp_nominal - extinction_coeff * airmass - zp_measured))
    return float(min(max(t, 0.0), max_value))


@dataclass(frozen=True)
class ApertureCorrection:
    """Result of :func:`aperture_correction`.

    Attributes:
        radius: aperture radius corrected, pixels.
        factor: multiply aperture fluxes (and their errors) by this to get total fluxes.
        mag: the same as a magnitude, ``-2.5 log10(factor)`` (add to aperture magnitudes).
        error: 1-sigma error of ``mag`` (from the fit, scaled by sqrt(reduced chi2); NaN for
            one star without ``err``).
        n_stars: stars used.
        radii: radii of the curve of growth, pixels.
        growth: median normalised curve of growth (flux(r) / flux(total radius)).
    """

    radius: float
    factor: float
    mag: float
    error: float
    n_stars: int
    radii: np.ndarray
    growth: np.ndarray


def aperture_correction(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    radius: float,
    total_radius: float,
    background: np.ndarray | float = 0.0,
    mask: np.ndarray | None = None,
    n_radii: int = 12,
    clip_sigma: float = 3.0,
    err: np.ndarray | float | None = None,
    gain: float | None = None,
) -> ApertureCorrection:
    """Aperture correction from the curve of growth of bright isolated stars.

    For each star the flux in circles of increasing radius up to ``total_radius`` is summed
    (sep.sum_circle, exact pixel overlap). ``factor`` is the slope of flux(total_radius)
    against flux(radius) through the origin, a weighted least-squares fit over the stars with
    iterative sigma clipping (Stetson 1990's growth-curve method without the extrapolation:
    choose ``total_radius`` where the curve has flattened, ~3-4 FWHM; the light beyond it is
    not included). Fitting the total flux, whose noise (the annulus on a bright sky) is much
    larger than the aperture's, as the dependent variable keeps the estimate unbiased: the
    mean of per-star ratios flux(radius) / flux(total) is not, since E[1/t] > 1/E[t] makes it
    high by ~(sigma_t / t)^2 for the noisy stars (~0.1 % in a simulated field of faint stars
    on a 5.5e4 e- sky).

    Args:
        image: (ny, nx) image, electrons.
        x, y: (n,) 0-based positions of bright, unsaturated, isolated point sources.
        radius: aperture to correct, pixels.
        total_radius: radius taken as the total flux, pixels (> radius).
        background: background map or level to subtract, electrons.
        mask: optional integer mask; stars with masked pixels inside ``total_radius`` are
            dropped.
        n_radii: points of the curve of growth.
        clip_sigma: clipping threshold on the normalised residuals of the fit.
        err: optional background noise sigma per pixel (map or scalar), electrons; with it
            each star is weighted by the inverse variance of its annulus flux (aperture and
            annulus noise, plus the star's Poisson noise with ``gain``), so bright stars
            dominate instead of the noisy faint ones. Without it every star's ratio
            flux(total) / flux(radius) counts equally.
        gain: e- per image unit for the stars' Poisson noise (with ``err``; None: no Poisson
            term).

    Raises:
        PhotometryError: ``total_radius <= radius`` or no usable star.
    """
    if not (0 < radius < total_radius):
        raise PhotometryError(f"need 0 < radius < total_radius, got {radius}, {total_radius}")
    data = np.ascontiguousarray(np.asarray(image, dtype=np.float32) - background, dtype=np.float32)
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    bad = None if mask is None else np.ascontiguousarray(np.asarray(mask) != 0)
    kw = {}
    if err is not None:
        kw["err"] = err if np.isscalar(err) else np.ascontiguousarray(err, dtype=np.float32)
        if gain is not None:
            kw["gain"] = float(gain)
    tot, tot_err, tflag = sep.sum_circle(data, xs, ys, total_radius, mask=bad, subpix=0, **kw)
    ap, ap_err, aflag = sep.sum_circle(data, xs, ys, radius, mask=bad, subpix=0, **kw)
    good = (tot > 0) & (ap > 0) & (tflag == 0) & (aflag == 0)
    if good.sum() < 1:
        raise PhotometryError("no usable star for the aperture correction")
    t, a = tot[good], ap[good]
    if err is not None:
        # residual t - c a = (1 - c) a + annulus flux with c ~ 1: the annulus noise dominates
        w = 1.0 / np.maximum(tot_err[good] ** 2 - ap_err[good] ** 2, 1e-12)
    else:
        w = 1.0 / a**2  # equal weight on every star's ratio t / a
    keep = np.ones(len(t), dtype=bool)
    for _ in range(5):
        c = float(np.sum(w[keep] * t[keep] * a[keep]) / np.sum(w[keep] * a[keep] ** 2))
        norm = (t - c * a) * np.sqrt(w)
        scale = max(1.4826 * float(np.median(np.abs(norm[keep]))), 1e-9)
        if err is not None:
            scale = max(scale, 1.0)
        new = np.abs(norm) <= clip_sigma * scale
        if new.sum() < 1 or np.array_equal(new, keep):
            break
        keep = new
    c = float(np.sum(w[keep] * t[keep] * a[keep]) / np.sum(w[keep] * a[keep] ** 2))
    nk = int(keep.sum())
    c_err = 1.0 / math.sqrt(float(np.sum(w[keep] * a[keep] ** 2)))
    if nk > 1:
        chi2 = float(np.sum(w[keep] * (t[keep] - c * a[keep]) ** 2)) / (nk - 1)
        c_err *= math.sqrt(chi2) if err is None else math.sqrt(max(1.0, chi2))
    elif err is None:
        c_err = math.nan  # one star and no noise model: no error estimate
    radii = np.linspace(0.5 * radius, total_radius, n_radii)
    gx, gy = xs[good][keep], ys[good][keep]
    growth = np.array(
        [
            float(np.median(sep.sum_circle(data, gx, gy, r, mask=bad, subpix=0)[0] / t[keep]))
            for r in radii
        ]
    )
    return ApertureCorrection(
        radius=float(radius),
        factor=c,
        mag=-2.5 * math.log10(c),
        error=2.5 / math.log(10.0) * c_err / c,
        n_stars=nk,
        radii=radii,
        growth=growth,
    )
