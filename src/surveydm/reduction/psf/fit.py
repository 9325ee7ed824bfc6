"""Fitting the Moffat PSF model to the stamps of a CCD's PSF stars."""

from __future__ import annotations

import math

import numpy as np

from surveydm.reduction.psf.model import MoffatPsf, PsfError, oversampling, stamp_data
from surveydm.reduction.psf.photometry import psf_photometry
from surveydm.reduction.stamps import moffat_fwhm, moffat_pixel_profile

__all__ = ["fit_moffat_psf"]


def fit_moffat_psf(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    err: np.ndarray,
    bad: np.ndarray | None = None,
    gain: float = 1.0,
    initial_fwhm: float = 2.0,
    rounds: int = 2,
    beta: float | None = None,
    fit_radius_fwhm: float = 3.0,
) -> MoffatPsf:
    """Fit one pixel-integrated Moffat PSF to the stamps of PSF stars.

    Alternates (1) PSF photometry of the stars (flux, x, y) with the current profile and
    (2) a least-squares fit of (alpha, beta) with the star positions fixed and each star's flux
    solved linearly, over pixels within max(3, 3 FWHM) pixels: variable projection (Golub &
    Pereyra 1973) with its analytic Jacobian (:class:`_Projected`).

    Args:
        image: (ny, nx) background-subtracted image, e-.
        x, y: (n,) positions of isolated, unsaturated PSF stars (n >= 3), pixels.
        err, bad, gain: as for :func:`psf_photometry`.
        initial_fwhm: starting FWHM guess, pixels.
        rounds: alternation rounds.
        beta: fixed Moffat beta (only alpha is fitted), or None to fit it.
        fit_radius_fwhm: the fitted pixels lie within max(3, this x FWHM) pixels.

    Raises:
        PsfError: fewer than 3 stars or a failed fit.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if len(xs) < 3:
        raise PsfError(f"need at least 3 PSF stars, got {len(xs)}")
    fixed_beta = beta
    beta0 = 3.0 if beta is None else float(beta)
    alpha = max(0.3, initial_fwhm) / (2.0 * math.sqrt(2 ** (1 / beta0) - 1))
    psf = MoffatPsf(alpha, beta0, len(xs), ov=oversampling(initial_fwhm))
    for _ in range(rounds):
        phot = psf_photometry(image, xs, ys, psf, err=err, bad=bad, gain=gain)
        ok = phot.converged
        if ok.sum() < 3:
            ok = np.isfinite(phot.x) & (phot.flux > 0)
        px, py, pf = phot.x[ok], phot.y[ok], phot.flux[ok]
        r_fit = max(3.0, fit_radius_fwhm * psf.fwhm)
        half = int(math.ceil(r_fit + 1))
        d, var_bkg, valid, dx, dy = stamp_data(image, err, bad, px, py, half)
        inside = valid & (dx**2 + dy**2 <= r_fit**2)
        ov = oversampling(psf.fwhm)
        w_fix = np.where(
            inside,
            1.0 / (var_bkg + np.maximum(pf[:, None, None] * psf.profile(dx, dy), 0.0) / gain),
            0.0,
        )
        dxf, dyf = np.broadcast_to(dx, d.shape)[inside], np.broadcast_to(dy, d.shape)[inside]
        problem = _Projected(dxf, dyf, d[inside], w_fix[inside], ov, fixed_beta,
                             np.nonzero(inside)[0], len(d))  # fmt: skip
        start = [math.log(psf.alpha)] + ([psf.beta] if fixed_beta is None else [])
        lo = [math.log(0.05)] + ([1.2] if fixed_beta is None else [])
        hi = [math.log(50.0)] + ([15.0] if fixed_beta is None else [])
        x_fit = _levenberg_marquardt(problem, np.array(start), np.array(lo), np.array(hi))
        if not np.all(np.isfinite(x_fit)):
            raise PsfError("Moffat PSF fit failed (non-finite parameters)")
        a_fit = math.exp(x_fit[0])
        b_fit = float(x_fit[1]) if fixed_beta is None else float(fixed_beta)
        psf = MoffatPsf(a_fit, b_fit, int(ok.sum()), ov=oversampling(moffat_fwhm(a_fit, b_fit)))
    return psf


def _levenberg_marquardt(problem, p, lo, hi, max_iter: int = 40) -> np.ndarray:
    """Minimise ``|problem.residuals(p)|^2`` within the box [lo, hi] by Levenberg-Marquardt
    (Marquardt 1963: diagonal damping, steps clipped to the box) with the analytic Jacobian."""
    r = problem.residuals(p)
    cost = float(np.sum(r * r))
    lam = 1e-3
    for _ in range(max_iter):
        cols = problem.jacobian(p)
        a = np.array([[float(np.sum(ci * cj)) for cj in cols] for ci in cols])
        g = np.array([float(np.sum(ci * r)) for ci in cols])
        for _ in range(10):
            step = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-30), -g)
            trial = np.clip(p + step, lo, hi)
            r_new = problem.residuals(trial)
            c_new = float(np.sum(r_new * r_new))
            if np.isfinite(c_new) and c_new <= cost:
                break
            lam *= 10.0
        else:
            return p
        done = cost - c_new <= 1e-7 * cost or np.max(np.abs(trial - p)) < 1e-5
        p, r, cost, lam = trial, r_new, c_new, max(lam / 10.0, 1e-9)
        if done:
            break
    return p


class _Projected:
    """Weighted residuals of the star stamps for Moffat ``(log alpha, beta)``, each star's flux
    solved linearly (variable projection, Golub & Pereyra 1973), and their exact Jacobian from
    the profile's analytic alpha and beta derivatives (one profile evaluation per call).

    The fitted pixels are given flat (``dx, dy, d, w``: (npix,)), with ``star`` (npix,) the
    index of the star each belongs to (of ``n``).
    """

    def __init__(self, dx, dy, d, w, ov, beta, star, n):
        self.dx, self.dy, self.d, self.w, self.ov = dx, dy, d, w, ov
        self.beta = beta  # fixed beta: the parameters are (log alpha,) alone
        self.star, self.n = star, n
        self.sw = np.sqrt(w)
        self._key = None

    def _sum(self, v):
        return np.bincount(self.star, weights=v, minlength=self.n)

    def _eval(self, p):
        key = tuple(float(v) for v in p)
        if key != self._key:
            alpha = math.exp(p[0])
            beta = p[1] if self.beta is None else self.beta
            prof, _, _, ga, gb = moffat_pixel_profile(
                self.dx, self.dy, alpha, beta, ov=self.ov, derivatives=True,
                alpha_derivative=True, beta_derivative=True,
            )  # fmt: skip
            grads = (ga * alpha, gb) if self.beta is None else (ga * alpha,)
            self._cache = (prof, *grads)  # d/dlog(alpha) = alpha d/dalpha
            self._key = key
        return self._cache

    def _flux(self, prof):
        den = np.maximum(self._sum(self.w * prof**2), 1e-30)
        return self._sum(self.w * prof * self.d) / den, den

    def residuals(self, p):
        prof = self._eval(p)[0]
        f, _ = self._flux(prof)
        return (self.d - f[self.star] * prof) * self.sw

    def jacobian(self, p) -> list[np.ndarray]:
        """The Jacobian's columns, one (npix,) array per parameter."""
        prof, *grads = self._eval(p)
        f, den = self._flux(prof)
        fs = f[self.star]
        cols = []
        for g in grads:
            # f = <p, d> / <p, p>: df = (<g, d> - 2 f <p, g>) / <p, p>
            df = (self._sum(self.w * g * self.d) - 2.0 * f * self._sum(self.w * prof * g)) / den
            cols.append(-(fs * g + df[self.star] * prof) * self.sw)
        return cols
