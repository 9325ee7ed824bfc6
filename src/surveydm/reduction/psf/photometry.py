"""PSF photometry of every source (vectorised Gauss-Newton fits of flux, x, y and optionally
the Moffat width on stamps) and SPREAD_MODEL (Desai et al. 2012)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from surveydm.reduction.psf.kernels import gauss_legendre, gauss_newton_stamps
from surveydm.reduction.psf.model import MoffatPsf, stamp_data

__all__ = ["PsfPhotometry", "psf_photometry", "spread_model"]


@dataclass(frozen=True)
class PsfPhotometry:
    """Per-source PSF-fit results of :func:`psf_photometry` (arrays of length n).

    Attributes:
        x, y: fitted centres, 0-based pixels.
        xerr, yerr: their 1-sigma errors, pixels.
        flux, flux_err: fitted PSF flux and error, e- (the total flux of a point source).
        converged: the fit converged near its start with a positive flux.
        alpha: Moffat alpha used for each source, pixels: the model's, or the fitted one where
            the width was a free parameter (``width_fitted``).
        width_fitted: the source's width was fitted (and converged).
    """

    x: np.ndarray
    y: np.ndarray
    xerr: np.ndarray
    yerr: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    converged: np.ndarray
    alpha: np.ndarray | None = None
    width_fitted: np.ndarray | None = None
    chi2: np.ndarray | None = None


def _misfit_scale(chi2_red: np.ndarray, dof: np.ndarray | None = None) -> np.ndarray:
    """Variance scale ``max(1, chi2_red)`` of a PSF fit: where the model does not describe the
    star within its noise (PSF mismatch, blends), the Fisher errors are inflated by the misfit
    (as the zero-point error is in :mod:`reduction.photometry`); NaN chi2 gives 1. (Scaling
    only the fits that a chi-square test rejects gave nightly pulls of 1.07 instead of ~1.0 at
    S/N 5-20 on paucam-mini: the noise of chi2 covers other unmodelled faint-end errors.)"""
    return np.where(np.isfinite(chi2_red), np.maximum(chi2_red, 1.0), 1.0)


def _gauss_newton(
    d, var_bkg, inside, dx0, dy0, psf, gain, iterations, flux, alpha, *, init, fixed_alpha=None
):
    """Gauss-Newton fits of (flux, x, y) or, with ``alpha`` (m,) given, of (flux, x, y, alpha)
    on (m, k, k) stamps (compiled: :func:`~surveydm.reduction.psf.kernels.gauss_newton_stamps`;
    ``init``: start from the linear flux at the start position). Returns (flux, cx, cy, alpha,
    cov, last_step, chi2_red): ``chi2_red`` is the weighted residual sum of squares of the last
    iteration per degree of freedom (NaN with no degree of freedom)."""
    nodes, weights = gauss_legendre(psf.ov)
    fit_alpha = alpha is not None
    alpha0 = alpha if fit_alpha else fixed_alpha
    if alpha0 is None:
        alpha0 = np.full(len(d), float(psf.alpha))
    flux, cx, cy, alpha_out, cov, step, chi2_red = gauss_newton_stamps(
        np.ascontiguousarray(d, dtype=np.float64),
        np.ascontiguousarray(var_bkg, dtype=np.float64),
        np.ascontiguousarray(inside),
        np.ascontiguousarray(np.broadcast_to(dx0, d.shape), dtype=np.float64),
        np.ascontiguousarray(np.broadcast_to(dy0, d.shape), dtype=np.float64),
        np.ascontiguousarray(alpha0, dtype=np.float64),
        fit_alpha,
        float(psf.beta),
        nodes,
        weights,
        float(gain),
        int(iterations),
        np.ascontiguousarray(flux, dtype=np.float64),
        bool(init),
    )
    return flux, cx, cy, (alpha_out if fit_alpha else None), cov, step, chi2_red


def psf_photometry(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    psf: MoffatPsf,
    *,
    err: np.ndarray,
    bad: np.ndarray | None = None,
    gain: float = 1.0,
    fit_radius: float | None = None,
    iterations: int = 4,
    chunk: int = 2048,
    fit_width: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
) -> PsfPhotometry:
    """Fit the PSF (flux, x, y) to every source, vectorised Gauss-Newton on stamps.

    Args:
        image: (ny, nx) background-subtracted image, e-.
        x, y: (n,) starting positions, 0-based pixels.
        psf: the CCD's :class:`MoffatPsf`.
        err: (ny, nx) background noise sigma per pixel, e-.
        bad: (ny, nx) bool map of pixels to ignore.
        gain: e- per image unit for the source Poisson variance (taken from the model).
        fit_radius: radius of the fitted pixels (default max(2, 1.5 FWHM) pixels).
        iterations: Gauss-Newton iterations (positions move by at most 0.5 pixel each).
        chunk: sources per vectorised batch (bounds memory).
        fit_width: optional (n,) bool: for these sources (bright stars) the Moffat alpha is a
            fourth free parameter (beta fixed), over pixels within ``max(fit_radius, 2 FWHM)``,
            starting from the (flux, x, y) fit. This absorbs the PSF size change across the
            field and with brightness (brighter-fatter), which a fixed model turns into flux
            errors of a few per cent; the flux error then includes the flux-width covariance.
            Where this fit fails, the (flux, x, y) result is kept.
        alpha: optional (n,) Moffat alpha of each source (a PSF width varying across the
            CCD), pixels; default the model's. Width fits start from it.

    Returns:
        :class:`PsfPhotometry`; errors come from the inverse Fisher matrix with background and
        source Poisson variance.
    """
    x0 = np.asarray(x, dtype=np.float64)
    y0 = np.asarray(y, dtype=np.float64)
    n = len(x0)
    out = {k: np.full(n, np.nan) for k in ("x", "y", "xerr", "yerr", "flux", "flux_err", "chi2")}
    conv = np.zeros(n, dtype=bool)
    alpha_src = np.full(n, float(psf.alpha)) if alpha is None else np.asarray(alpha, float)
    alpha_out = alpha_src.copy()
    fitted = np.zeros(n, dtype=bool)
    r_fit = fit_radius if fit_radius is not None else max(2.0, 1.5 * psf.fwhm)
    half = int(math.ceil(r_fit + 1.0))
    for s in range(0, n, chunk):
        e = slice(s, min(n, s + chunk))
        d, var_bkg, valid, dx0, dy0 = stamp_data(image, err, bad, x0[e], y0[e], half)
        inside = valid & (dx0**2 + dy0**2 <= (r_fit + 0.5) ** 2)
        flux, cx, cy, _, cov, step, chi2 = _gauss_newton(
            d, var_bkg, inside, dx0, dy0, psf, gain, iterations, np.zeros(len(d)), None,
            init=True, fixed_alpha=alpha_src[e],
        )  # fmt: skip
        finite = np.all(np.isfinite(cov[:, [0, 1, 2], [0, 1, 2]]), axis=1)
        ok = (
            (flux > 0)
            & (np.hypot(cx, cy) < 1.5)
            & finite
            & (np.abs(step[:, 1]) < 0.05)
            & (np.abs(step[:, 2]) < 0.05)
        )
        out["x"][e] = x0[e] + cx
        out["y"][e] = y0[e] + cy
        dof = np.sum(inside, axis=(1, 2)) - 3
        diag = np.abs(cov[:, [0, 1, 2], [0, 1, 2]]) * _misfit_scale(chi2, dof)[:, None]
        out["chi2"][e] = chi2
        out["flux"][e] = flux
        out["flux_err"][e] = np.sqrt(diag[:, 0])
        out["xerr"][e] = np.sqrt(diag[:, 1])
        out["yerr"][e] = np.sqrt(diag[:, 2])
        conv[e] = ok
    if fit_width is not None:
        want = np.asarray(fit_width, dtype=bool) & conv
        if want.any():
            _fit_widths(image, err, bad, gain, psf, r_fit, iterations, chunk, want, out, alpha_out)
            fitted = want & np.isfinite(alpha_out) & (alpha_out != alpha_src)
    return PsfPhotometry(converged=conv, alpha=alpha_out, width_fitted=fitted, **out)


def _fit_widths(image, err, bad, gain, psf, r_fit, iterations, chunk, want, out, alpha_out):
    """(flux, x, y, alpha) fits of the sources in ``want``, updating ``out`` where they
    converge (see :func:`psf_photometry`)."""
    sel = np.flatnonzero(want)
    r_w = max(r_fit, 2.0 * psf.fwhm)
    half = int(math.ceil(r_w + 1.0))
    for s in range(0, len(sel), chunk):
        ii = sel[s : s + chunk]
        xs, ys = out["x"][ii], out["y"][ii]
        d, var_bkg, valid, dx0, dy0 = stamp_data(image, err, bad, xs, ys, half)
        inside = valid & (dx0**2 + dy0**2 <= (r_w + 0.5) ** 2)
        flux, cx, cy, alpha, cov, step, chi2 = _gauss_newton(
            d, var_bkg, inside, dx0, dy0, psf, gain, iterations + 2, out["flux"][ii],
            alpha_out[ii].copy(), init=False,
        )  # fmt: skip
        dof = np.sum(inside, axis=(1, 2)) - 4
        diag = np.abs(cov[:, [0, 1, 2, 3], [0, 1, 2, 3]]) * _misfit_scale(chi2, dof)[:, None]
        ok = (
            (flux > 0)
            & np.all(np.isfinite(diag), axis=1)
            & (np.hypot(cx, cy) < 0.5)
            & (np.abs(step[:, 1]) < 0.05)
            & (np.abs(step[:, 2]) < 0.05)
            & (np.abs(step[:, 3]) < 0.01 * alpha)
            & (alpha > 0.5 * psf.alpha)
            & (alpha < 2.0 * psf.alpha)
        )
        k = ii[ok]
        out["x"][k] = xs[ok] + cx[ok]
        out["y"][k] = ys[ok] + cy[ok]
        out["flux"][k] = flux[ok]
        out["flux_err"][k] = np.sqrt(diag[ok, 0])
        out["xerr"][k] = np.sqrt(diag[ok, 1])
        out["yerr"][k] = np.sqrt(diag[ok, 2])
        out["chi2"][k] = chi2[ok]
        alpha_out[k] = alpha[ok]


def spread_model(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    psf: MoffatPsf,
    *,
    err: np.ndarray,
    bad: np.ndarray | None = None,
    gain: float = 1.0,
    radius: float | None = None,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """SPREAD_MODEL and its error for sources at (x, y) (Desai et al. 2012, eq. 1).

    ``(G.p)/(psi.p) - (G.psi)/(psi.psi)`` over pixels within ``radius`` (default
    max(3, 2 FWHM) pixels), with psi the PSF and G the PSF convolved with an exponential disc of
    scale FWHM/16 (a Moffat of the same beta whose second moment is larger by 6 h^2).
    Uniform weights; the error propagates the background + source Poisson variance.
    """
    x0 = np.asarray(x, dtype=np.float64)
    y0 = np.asarray(y, dtype=np.float64)
    n = len(x0)
    sm = np.full(n, np.nan)
    sme = np.full(n, np.nan)
    h = psf.fwhm / 16.0
    alpha_g = math.sqrt(psf.alpha**2 + 6.0 * h * h * max(psf.beta - 2.0, 0.2))
    gpsf = replace(psf, alpha=alpha_g)
    r = radius if radius is not None else max(3.0, 2.0 * psf.fwhm)
    half = int(math.ceil(r + 1))
    for s in range(0, n, chunk):
        e = slice(s, min(n, s + chunk))
        d, var_bkg, valid, dx, dy = stamp_data(image, err, bad, x0[e], y0[e], half)
        inside = valid & (dx**2 + dy**2 <= r * r)
        psi = np.where(inside, psf.profile(dx, dy), 0.0)
        g = np.where(inside, gpsf.profile(dx, dy), 0.0)
        var = var_bkg + np.maximum(d, 0.0) / gain
        gp = np.sum(g * d, axis=(1, 2))
        pp = np.sum(psi * d, axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            sm[e] = gp / pp - np.sum(g * psi, axis=(1, 2)) / np.sum(psi * psi, axis=(1, 2))
            num = (
                pp**2 * np.sum(g * g * var, axis=(1, 2))
                + gp**2 * np.sum(psi * psi * var, axis=(1, 2))
                - 2.0 * gp * pp * np.sum(g * psi * var, axis=(1, 2))
            )
            sme[e] = np.sqrt(np.maximum(num, 0.0)) / pp**2
    return sm, sme
