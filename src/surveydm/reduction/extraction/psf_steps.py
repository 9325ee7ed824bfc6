"""Steps 4, 5 and 7 of source extraction: the CCD's PSF model from its stellar locus (beta from
the brightest stars' wings, alpha from the S/N 30-100 stars), PSF fits of every source with the
PSF width mapped across the CCD (positions, fluxes, SPREAD_MODEL) and the optional PSF-flux
error floor; the FWHM of each source. Methods: a pixel-integrated Moffat PSF per CCD with
PSF-fit centroids and fluxes (as IPP's psphot, Magnier et al. 2016), SPREAD_MODEL (Desai et
al. 2012), stellarity from the DES "modest" cut (Drlica-Wagner et al. 2018); see
:mod:`surveydm.reduction.psf`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table
from scipy.spatial import cKDTree
from scipy.stats import f as f_dist

from surveydm.reduction.extraction.aperture import (
    MASK_FLAG_SHIFT,
    ApertureFlux,
    aperture_mask_bits,
)
from surveydm.reduction.extraction.centroids import GAUSS_FWHM, GAUSS_RHALF, WindowedCentroids
from surveydm.reduction.extraction.detection import Detections
from surveydm.reduction.extraction.image import MeasurementImage
from surveydm.reduction.extraction.kron import KronPhotometry
from surveydm.reduction.psf import (
    MoffatPsf,
    PsfError,
    fit_moffat_psf,
    psf_photometry,
    select_psf_stars,
    spread_model,
)

__all__ = [
    "PsfFit",
    "PsfModelFit",
    "class_star",
    "fit_psf_model",
    "fit_psf_sources",
    "psf_error_floor",
    "psf_flux_floor",
    "psf_width_map",
    "source_fwhm",
]

#: Median of the chi-square distribution with one degree of freedom.
_CHI2_1_MEDIAN = 0.4549364231195724

#: PSF stars wanted in the S/N window before brighter stars are admitted to the PSF model.
_MIN_PSF_STARS = 10

#: Bright stars needed to fit the Moffat beta on them (``_wing_beta``).
_MIN_BETA_STARS = 10


@dataclass(frozen=True)
class PsfModelFit:
    """The CCD's PSF model and the stars it was fitted to.

    Attributes:
        psf: the fitted :class:`~surveydm.reduction.psf.MoffatPsf`, or None (no model wanted,
            fewer than 5 PSF stars, or a failed fit).
        stars: int64 indices of the PSF stars (brightest first).
        locus: per-source ``snr, elongation, flux_radius, flags`` (flags with the mask bits
            within ``max(r_aperture, 3)`` pixels) on which PSF stars are selected; None without
            a model.
    """

    psf: MoffatPsf | None
    stars: np.ndarray
    locus: Table | None


@dataclass(frozen=True)
class PsfFit:
    """PSF photometry of every source (arrays of length n; NaN without a PSF model).

    Attributes:
        x, y: final positions, 0-based pixels: the PSF-fit centre where ``used``, else the
            windowed centroid.
        xerr, yerr: PSF-fit position errors where ``used`` (NaN elsewhere), pixels.
        used: the PSF fit converged within 1 pixel of the windowed centroid.
        flux, flux_err: PSF-fit flux (total flux of a point source) and its error before the
            CCD's floor, e- (NaN where the fit did not converge).
        alpha: Moffat alpha of each source's fit, pixels (None without a model).
        spread_model, spreaderr_model: SPREAD_MODEL and its error (Desai et al. 2012).
    """

    x: np.ndarray
    y: np.ndarray
    xerr: np.ndarray
    yerr: np.ndarray
    used: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    alpha: np.ndarray | None
    spread_model: np.ndarray
    spreaderr_model: np.ndarray


def fit_psf_model(
    img: MeasurementImage,
    det: Detections,
    kron: KronPhotometry,
    win: WindowedCentroids,
    r_ap: float,
    saturation: float | None,
    config,
) -> PsfModelFit:
    """Fit the Moffat PSF to the stellar locus (``config``: an ``ExtractionConfig``).

    Stars of S/N 30 to ``psf_max_snr`` make the model: they represent the bulk of the sources
    measured with it, free of the non-linearity and brighter-fatter broadening of stars near
    saturation (brighter stars get their own width, ``width_fit_snr``). Without enough of them,
    brighter stars are taken; at most ``max_psf_stars``, at least 5.
    """
    empty = np.zeros(0, dtype=np.int64)
    if not config.psf_model:
        return PsfModelFit(psf=None, stars=empty, locus=None)
    snr = kron.snr
    pre_mask = aperture_mask_bits(
        img.mask, win.x, win.y, max(r_ap, 3.0), saturation, det.peak_level
    )
    pre = Table(
        {
            "snr": snr,
            "elongation": det.elongation,
            "flux_radius": win.flux_radius,
            "flags": (det.flags | kron.flags).astype(np.int64) | (pre_mask << MASK_FLAG_SHIFT),
        }
    )
    stars = empty
    if config.psf_max_snr is not None:
        # among S/N 30-100 sources compact galaxies can outnumber the stars
        sel = select_psf_stars(
            pre, size_column="flux_radius", min_snr=30.0, max_snr=config.psf_max_snr,
            locus="smallest",
        )  # fmt: skip
        stars = np.nonzero(sel)[0]
    if len(stars) < _MIN_PSF_STARS:
        stars = np.nonzero(select_psf_stars(pre, size_column="flux_radius", min_snr=30.0))[0]
    stars = stars[np.argsort(-snr[stars])][: config.max_psf_stars]
    psf = None
    if len(stars) >= 5:
        fwhm0 = 2.0 * float(np.median(win.flux_radius[stars]))
        beta = _wing_beta(img, win, pre, snr, fwhm0, config)
        try:
            psf = fit_moffat_psf(
                img.sub, win.x[stars], win.y[stars], err=img.err_bkg, bad=img.meas_mask,
                gain=img.gain, initial_fwhm=fwhm0, beta=beta,
            )  # fmt: skip
        except PsfError:
            psf = None
    return PsfModelFit(psf=psf, stars=stars, locus=pre)


def _wing_beta(img, win, pre, snr, fwhm0, config) -> float | None:
    """Moffat beta of the CCD from its brightest unsaturated, unflagged stars of the stellar
    locus (at most ``config.beta_stars``, at least ``_MIN_BETA_STARS``), fitted with alpha over
    pixels within 4 FWHM; None (beta fitted with the model's stars) with fewer stars.

    The PSF flux of a point source is the total flux of the model, so the light in its wing,
    set by beta, is a per-CCD flux scale: from the faint window stars alone beta scatters by
    +-0.2 between CCDs (+-0.5 % in flux); the bright stars' high-S/N wings fix it.
    """
    if not config.beta_stars:
        return None
    bright = np.nonzero(select_psf_stars(pre, size_column="flux_radius", min_snr=30.0))[0]
    bright = bright[np.argsort(-snr[bright])][: config.beta_stars]
    if len(bright) < _MIN_BETA_STARS:
        return None
    try:
        psf = fit_moffat_psf(
            img.sub, win.x[bright], win.y[bright], err=img.err_bkg, bad=img.meas_mask,
            gain=img.gain, initial_fwhm=fwhm0, fit_radius_fwhm=4.0, rounds=1,
        )  # fmt: skip
    except PsfError:
        return None
    return psf.beta


def fit_psf_sources(
    img: MeasurementImage,
    win: WindowedCentroids,
    psf: MoffatPsf | None,
    snr: np.ndarray,
    config,
    model: PsfModelFit | None = None,
) -> PsfFit:
    """PSF-fit every source from its windowed centroid (sources with S/N >= ``width_fit_snr``
    also fit the width), then SPREAD_MODEL at the final positions; without a model the
    windowed centroids are kept and the PSF columns are NaN.

    With ``model`` (its stellar locus), the widths fitted on the bright point sources map the
    PSF width across the CCD (:func:`psf_width_map`); where that map is significant, every
    source is fitted again with the width at its position.
    """
    n = len(win.x)
    nan = np.full(n, np.nan)
    if psf is None:
        return PsfFit(
            x=win.x, y=win.y, xerr=nan, yerr=nan.copy(), used=np.zeros(n, dtype=bool),
            flux=nan.copy(), flux_err=nan.copy(), alpha=None, spread_model=nan.copy(),
            spreaderr_model=nan.copy(),
        )  # fmt: skip
    fit_width = None if config.width_fit_snr is None else snr >= config.width_fit_snr
    err, bad, gain = img.err_bkg, img.meas_mask, img.gain
    alpha_map = None
    if model is not None and model.locus is not None and fit_width is not None and fit_width.any():
        # the bright sources' own widths first (a small subset), then one pass over all
        b = np.flatnonzero(fit_width)
        pre = psf_photometry(
            img.sub, win.x[b], win.y[b], psf, err=err, bad=bad, gain=gain,
            fit_width=np.ones(len(b), dtype=bool),
        )  # fmt: skip
        stars = np.zeros(n, dtype=bool)
        stars[b] = pre.width_fitted
        stars &= select_psf_stars(
            model.locus, size_column="flux_radius", min_snr=config.width_fit_snr
        )
        x_all, y_all, alpha_all = win.x.copy(), win.y.copy(), np.full(n, np.nan)
        x_all[b], y_all[b], alpha_all[b] = pre.x, pre.y, pre.alpha
        alpha_map = psf_width_map(
            x_all, y_all, alpha_all, stars, model.stars, img.sub.shape, psf.alpha
        )
    phot = psf_photometry(
        img.sub, win.x, win.y, psf, err=err, bad=bad, gain=gain, fit_width=fit_width,
        alpha=alpha_map,
    )  # fmt: skip
    used = phot.converged & (np.hypot(phot.x - win.x, phot.y - win.y) < 1.0)
    x = np.where(used, phot.x, win.x)
    y = np.where(used, phot.y, win.y)
    sm, sme = spread_model(img.sub, x, y, psf, err=err, bad=bad, gain=gain)
    return PsfFit(
        x=x,
        y=y,
        xerr=np.where(used, phot.xerr, nan),
        yerr=np.where(used, phot.yerr, nan),
        used=used,
        flux=np.where(phot.converged, phot.flux, np.nan),
        flux_err=np.where(phot.converged, phot.flux_err, np.nan),
        alpha=phot.alpha,
        spread_model=sm,
        spreaderr_model=sme,
    )


def psf_width_map(
    x: np.ndarray,
    y: np.ndarray,
    alpha: np.ndarray,
    stars: np.ndarray,
    model_stars: np.ndarray,
    shape: tuple[int, int],
    model_alpha: float,
    confidence: float = 0.99,
) -> np.ndarray | None:
    """Moffat alpha of every source from a polynomial in (x, y) fitted to the widths of the
    bright point sources, or None where a constant width fits as well.

    The PSF width changes across a CCD (field curvature, the optics' off-axis blur: a few per
    cent over a CCD, up to ~8 % at the field edge), which a single-width model turns into a
    position-dependent flux bias of the fainter sources. As PSFEx's PSFVAR_DEGREES (Bertin
    2011) the width is a polynomial in the position: linear with >= 10 stars, quadratic with
    >= 25, fitted with 3-sigma clipping; a higher degree is kept only if it lowers the residual
    sum of squares significantly (F-test at ``confidence``, Bevington & Robinson 2003 sec. 11.4).
    The map's shape is taken, not its level: it is scaled so that its mean over the PSF-model
    stars (``model_stars``, fainter, free of brighter-fatter broadening) is ``model_alpha``.

    Args:
        x, y: (n,) source positions, pixels.
        alpha: (n,) fitted Moffat alpha of the sources, pixels.
        stars: (n,) bool, bright point sources whose width was fitted.
        model_stars: indices of the PSF-model stars.
        shape: (ny, nx) of the image.
        model_alpha: the PSF model's alpha, pixels.

    Returns:
        (n,) alpha per source, pixels, or None.
    """
    ny, nx = shape
    u = (np.asarray(x, float) - 0.5 * nx) / (0.5 * nx)
    v = (np.asarray(y, float) - 0.5 * ny) / (0.5 * ny)
    terms = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
    idx = np.flatnonzero(np.asarray(stars, bool) & np.isfinite(alpha) & np.isfinite(u + v))
    if len(idx) < 10:
        return None
    a = np.asarray(alpha, float)
    keep = np.ones(len(idx), bool)
    for _ in range(3):  # 3-sigma clipping about the quadratic (or linear) fit
        p = 6 if keep.sum() >= 25 else 3
        coef, *_ = np.linalg.lstsq(terms[idx[keep], :p], a[idx[keep]], rcond=None)
        res = a[idx] - terms[idx, :p] @ coef
        sig = 1.4826 * np.median(np.abs(res[keep]))
        new = np.abs(res) <= 3.0 * max(sig, 1e-6 * model_alpha)
        if np.array_equal(new, keep) or new.sum() < 10:
            break
        keep = new
    sel = idx[keep]
    rss = {}
    coefs = {}
    for p in (1, 3, 6):
        if len(sel) >= (10 if p == 3 else 25 if p == 6 else 1) and len(sel) > p + 1:
            coefs[p], *_ = np.linalg.lstsq(terms[sel, :p], a[sel], rcond=None)
            rss[p] = float(np.sum((a[sel] - terms[sel, :p] @ coefs[p]) ** 2))
    best = 1
    for p in (3, 6):
        if p in rss and rss[p] > 0:
            dof = len(sel) - p
            f = ((rss[best] - rss[p]) / (p - best)) / (rss[p] / dof)
            if f > f_dist.ppf(confidence, p - best, dof):
                best = p
    if best == 1:
        return None
    level = terms[:, :best] @ coefs[best]
    ms = np.asarray(model_stars, dtype=np.int64)
    mean_model = float(np.mean(level[ms])) if len(ms) else float(np.median(level[sel]))
    if not mean_model > 0:
        return None
    return np.clip(level * (model_alpha / mean_model), 0.7 * model_alpha, 1.4 * model_alpha)


def class_star(sm: np.ndarray, sme: np.ndarray) -> np.ndarray:
    """Stellarity in [0, 1] from SPREAD_MODEL: 1 for point sources, 0 for resolved ones.

    ``1 - clip((spread_model + 5/3 spreaderr_model) / 0.005, 0, 1)``: the DES "modest"
    star/galaxy cut (Drlica-Wagner et al. 2018) sets galaxies at ``> 0.005``; NaN without a PSF.
    """
    with np.errstate(invalid="ignore"):
        v = (sm + (5.0 / 3.0) * sme) / 0.005
    return np.where(np.isfinite(v), 1.0 - np.clip(v, 0.0, 1.0), np.nan)


def psf_error_floor(
    model: PsfModelFit,
    fit: PsfFit,
    aper: ApertureFlux,
    flags: np.ndarray,
    snr: np.ndarray,
    stellarity: np.ndarray,
    r_ap: float,
    floor_min_snr: float | None,
) -> float:
    """The CCD's PSF-model mismatch floor (:func:`psf_flux_floor`), measured on its bright
    isolated point sources; NaN without a model, with ``floor_min_snr`` None or too few stars.

    ``flags``: (n,) final int64 flags; ``stellarity``: (n,) :func:`class_star`.
    """
    psf = model.psf
    if psf is None or floor_min_snr is None:
        return math.nan
    floor, _ = psf_flux_floor(
        fit.flux,
        fit.flux_err,
        aper.flux,
        aper.flux_err,
        fit.x,
        fit.y,
        # point sources by both measures: spread_model and the stellar size locus (on
        # narrow-band CCDs compact galaxies pass the class_star cut alone; their aperture
        # flux exceeds the PSF flux by up to 50 % and set floors of 5-12 %)
        (snr >= floor_min_snr)
        & (flags == 0)
        & (stellarity > 0.8)
        & select_psf_stars(
            model.locus, size_column="flux_radius", min_snr=floor_min_snr, locus="smallest"
        ),
        isolation=max(4.0 * psf.fwhm, r_ap + 2.0),
        # Moffat light within r_ap: 1 - (1 + r^2 / alpha^2)^(1 - beta)
        enclosed=1.0 - (1.0 + r_ap**2 / fit.alpha**2) ** (1.0 - psf.beta),
    )
    return floor


def source_fwhm(win: WindowedCentroids, model: PsfModelFit) -> np.ndarray:
    """FWHM per source, pixels: the half-light radius scaled by the PSF model's FWHM /
    half-light radius ratio (measured the same way on the model), or Gaussian-equivalent
    (``2.355 sqrt((r_half / 1.177)^2 - 1/12)``) without a model."""
    psf = model.psf
    if psf is not None:
        rmax_model = float(np.median(win.rmax[model.stars]))
        return win.flux_radius * (psf.fwhm / model_flux_radius(psf, rmax_model))
    sigma_g2 = (win.flux_radius / GAUSS_RHALF) ** 2 - 1.0 / 12.0
    return GAUSS_FWHM * np.sqrt(np.where(sigma_g2 > 0, sigma_g2, np.nan))


def psf_flux_floor(
    flux_psf: np.ndarray,
    flux_err_psf: np.ndarray,
    flux_aper: np.ndarray,
    flux_err_aper: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    candidates: np.ndarray,
    *,
    isolation: float,
    enclosed: np.ndarray | None = None,
    min_stars: int = 5,
) -> tuple[float, int]:
    """Fractional PSF-flux error floor from the scatter of PSF-fit against aperture fluxes.

    For the ``candidates`` (bright, clean point sources) without another source within
    ``isolation`` pixels, ``d = (flux_psf / flux_aper) / median - 1`` would scatter with
    variance ``v = (err_aper^2 - err_psf^2) / flux_aper^2`` if the PSF model were exact (the
    PSF fit is the efficient estimator on the same pixels, so the variance of the difference
    is the difference of the variances: Hausman 1978). The floor ``f`` solves
    ``median(d^2 / (v + f^2)) = 0.455`` (the median of chi-square with one degree of freedom),
    0 when the scatter is already explained. It absorbs PSF-model mismatch (shape changes
    across the CCD or with brightness, undersampling) and, conservatively, the aperture's own
    systematics (neighbours' light). ``enclosed`` (the fraction of each star's fitted PSF
    inside the aperture) puts the aperture fluxes of stars of different fitted widths on the
    same total-flux scale first, so width changes are not taken for scatter.

    Args:
        flux_psf, flux_err_psf, flux_aper, flux_err_aper: (n,) fluxes and errors, e-.
        x, y: (n,) positions, pixels (for the isolation test).
        candidates: (n,) bool, the sources that may be used.
        enclosed: optional (n,) fraction of each source's PSF model within the aperture.
        isolation: minimum distance to any other source, pixels.
        min_stars: fewer usable stars give NaN.

    Returns:
        ``(floor, n_stars)``: the fractional floor (NaN with too few stars) and the stars used.
    """
    fp = np.asarray(flux_psf, float)
    fa = np.asarray(flux_aper, float)
    ea = np.asarray(flux_err_aper, float)
    if enclosed is not None:
        frac = np.asarray(enclosed, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            fa, ea = fa / frac, ea / frac
    use = np.asarray(candidates, bool) & np.isfinite(fp) & (fp > 0) & (fa > 0)
    if use.sum() >= min_stars and len(fp) > 1:
        xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
        nn, _ = cKDTree(xy).query(xy[use], k=2)
        idx = np.flatnonzero(use)[nn[:, 1] > isolation]
    else:
        idx = np.zeros(0, dtype=np.int64)
    if len(idx) < min_stars:
        return math.nan, int(len(idx))
    q = fp[idx] / fa[idx]
    d = q / np.median(q) - 1.0
    v = np.asarray(flux_err_aper, float)[idx] ** 2 - np.asarray(flux_err_psf, float)[idx] ** 2
    v = np.maximum(v / fa[idx] ** 2, 1e-10)
    v = np.where(np.isfinite(v), v, 1e-10)
    d2 = d * d
    if np.median(d2 / v) <= _CHI2_1_MEDIAN:
        return 0.0, int(len(idx))
    lo, hi = 0.0, max(1.0, float(np.sqrt(np.max(d2))))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.median(d2 / (v + mid * mid)) > _CHI2_1_MEDIAN:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi), int(len(idx))


def model_flux_radius(psf: MoffatPsf, rmax: float) -> float:
    """Half-light radius that sep.flux_radius measures on the pixelised PSF model (pixels)."""
    half = int(math.ceil(max(10.0, 8.0 * psf.fwhm, rmax + 2)))
    size = 2 * half + 1
    phases = np.array([0.0, 0.25, 0.5, -0.25])
    n = len(phases) ** 2
    img = np.zeros((size, size * n), dtype=np.float64)
    xs, ys = [], []
    k = 0
    for fy in phases:
        for fx in phases:
            xc, yc = half + k * size + fx, half + fy
            yy, xx = np.mgrid[0:size, k * size : (k + 1) * size]
            img[:, k * size : (k + 1) * size] = psf.profile(xx - xc, yy - yc)
            xs.append(xc)
            ys.append(yc)
            k += 1
    img = np.ascontiguousarray(img, dtype=np.float32)
    xs_a, ys_a = np.array(xs), np.array(ys)
    r, _ = sep.flux_radius(img, xs_a, ys_a, np.full(n, float(rmax)), 0.5, subpix=5)
    return float(np.median(r))
