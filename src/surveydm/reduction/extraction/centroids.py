"""Step 3 of source extraction: half-light radii and Gaussian-windowed centroids (SExtractor
``FLUX_RADIUS`` and ``XWIN_IMAGE``/``ERRX2WIN_IMAGE``, Bertin & Arnouts 1996; SExtractor manual
sect. "Windowed positional parameters"), each object's neighbours masked through the
segmentation map: sep.flux_radius with ``segmap``/``seg_id``, and SExtractor's windowed-centroid
iteration (``winpos.c``, :func:`.segmented.windowed_positions`), as sep.winpos cannot mask
neighbours and a neighbour within the window pulls the centroid towards it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep

from surveydm.reduction.extraction.detection import Detections
from surveydm.reduction.extraction.image import MeasurementImage
from surveydm.reduction.extraction.kron import measurement_mask, segment_ids
from surveydm.reduction.extraction.segmented import windowed_positions
from surveydm.reduction.stamps import pixel_stamps

__all__ = [
    "GAUSS_FWHM",
    "GAUSS_RHALF",
    "WindowedCentroids",
    "centroid_errors",
    "windowed_centroids",
]

GAUSS_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM / sigma of a Gaussian
GAUSS_RHALF = math.sqrt(2.0 * math.log(2.0))  # half-light radius / sigma of a 2-D Gaussian


@dataclass(frozen=True)
class WindowedCentroids:
    """Half-light radii and windowed centroids of the detections (arrays of length n).

    Attributes:
        flux_radius: half-light radius, pixels (NaN where not measured), normalised by the
            flux within ``rmax``.
        rmax: radius within which ``flux_radius`` is measured, ``max(6 a, 4)`` pixels.
        sigma: window sigma ``2 r_half / 2.355`` clipped to [0.5, 20] pixels.
        x, y: windowed centroids, 0-based pixels; the isophotal barycentre where ``failed``.
        failed: the windowed flux was not positive, or the centroid is not finite or moved by
            more than ``2 max(a, 1)`` pixels from the barycentre.
    """

    flux_radius: np.ndarray
    rmax: np.ndarray
    sigma: np.ndarray
    x: np.ndarray
    y: np.ndarray
    failed: np.ndarray


def windowed_centroids(img: MeasurementImage, det: Detections) -> WindowedCentroids:
    """Half-light radius, then the windowed centroid with the SExtractor window sigma
    ``2 r_half / 2.355``, both with the neighbours (``det.segmap``) and masked pixels left out
    (see the module docstring)."""
    x0, y0, a = det.x, det.y, det.a
    ids = segment_ids(det)
    # (normalised by the flux within rmax, as on the PSF model in psf_steps.model_flux_radius)
    rmax = np.maximum(6.0 * a, 4.0)
    flux_radius, _ = sep.flux_radius(
        img.sub, x0, y0, rmax, 0.5, mask=img.meas_mask, segmap=det.segmap, seg_id=ids, subpix=5
    )
    flux_radius = np.where(np.isfinite(flux_radius) & (flux_radius > 0), flux_radius, np.nan)
    sig = 2.0 * np.nan_to_num(flux_radius, nan=1.0) / GAUSS_FWHM
    sig = np.clip(sig, 0.5, 20.0)
    xwin, ywin, ok = windowed_positions(
        img.sub, det.segmap, measurement_mask(img), x0, y0, sig, ids
    )
    failed = ~ok | ~np.isfinite(xwin) | ~np.isfinite(ywin)
    failed |= np.hypot(xwin - x0, ywin - y0) > 2.0 * np.maximum(a, 1.0)
    return WindowedCentroids(
        flux_radius=flux_radius,
        rmax=rmax,
        sigma=sig,
        x=np.where(failed, x0, xwin),
        y=np.where(failed, y0, ywin),
        failed=failed,
    )


def centroid_errors(
    img: MeasurementImage,
    det: Detections,
    win: WindowedCentroids,
    keep: np.ndarray,
    xerr: np.ndarray,
    yerr: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Position errors (pixels): ``xerr, yerr`` (n,) where ``keep``, elsewhere the windowed
    centroid's (``ERRX2WIN``), or the isophotal barycentre's where that one failed."""
    xerr, yerr = xerr.copy(), yerr.copy()
    win_sel = ~keep
    if win_sel.any():
        sig = win.sigma[win_sel]
        half = int(min(15, max(3, math.ceil(4.0 * float(np.percentile(sig, 99))))))
        xe, ye = _winpos_errors(
            img.sub, img.err_bkg, img.meas_mask, win.x[win_sel], win.y[win_sel], sig, img.gain, half
        )
        iso_x = np.sqrt(np.maximum(det.errx2[win_sel], 0))
        iso_y = np.sqrt(np.maximum(det.erry2[win_sel], 0))
        xerr[win_sel] = np.where(np.isfinite(xe) & ~win.failed[win_sel], xe, iso_x)
        yerr[win_sel] = np.where(np.isfinite(ye) & ~win.failed[win_sel], ye, iso_y)
    return xerr, yerr


def _winpos_errors(
    sub: np.ndarray,
    err: np.ndarray,
    meas_mask: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    sig: np.ndarray,
    gain: float,
    half: int,
) -> tuple[np.ndarray, np.ndarray]:
    """1-sigma errors of Gaussian-windowed centroids (SExtractor ERRX2WIN/ERRY2WIN)."""
    n = len(x)
    xerr = np.full(n, np.nan)
    yerr = np.full(n, np.nan)
    chunk = 4096
    for s in range(0, n, chunk):  # chunks bound the memory of the (n, k, k) stamps
        e = slice(s, min(n, s + chunk))
        vals, valid, dx, dy = pixel_stamps(sub, x[e], y[e], half, fill=0.0)
        evals, _, _, _ = pixel_stamps(err, x[e], y[e], half, fill=0.0)
        if meas_mask is not None:
            mvals, _, _, _ = pixel_stamps(meas_mask, x[e], y[e], half, fill=True)
            valid = valid & ~mvals
        r2 = dx**2 + dy**2
        s2 = sig[e][:, None, None] ** 2
        w = np.where(valid & (r2 <= 16.0 * s2), np.exp(-0.5 * r2 / s2), 0.0)
        var = evals.astype(np.float64) ** 2 + np.maximum(vals, 0.0) / gain
        tv = np.sum(w * vals, axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            xerr[e] = np.sqrt(4.0 * np.sum(w * w * var * dx * dx, axis=(1, 2))) / np.abs(tv)
            yerr[e] = np.sqrt(4.0 * np.sum(w * w * var * dy * dy, axis=(1, 2))) / np.abs(tv)
    return xerr, yerr
