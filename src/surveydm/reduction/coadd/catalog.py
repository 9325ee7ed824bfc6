"""Single- and dual-mode catalogs of co-added tiles (seed 002: "single mode" and "dual mode"
catalogs; SExtractor's dual-image mode, Bertin & Arnouts 1996).

Single mode detects and measures on each band's co-add. Dual mode detects on a reference band
(r by default) and measures every band at those positions and shapes, on images first
homogenised to the worst PSF (:func:`surveydm.reduction.coadd.psf.homogenise`), so aperture
colours compare the same part of each source. Measurements (sep, Barbary 2016): fluxes in a set
of circular apertures, the Kron flux (``MAG_AUTO``: 2.5 Kron radii, Kron 1980), and a PSF flux
fitted at the fixed position with the tile's empirical PSF stamp (linear least squares).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sep
from scipy import ndimage

from surveydm.reduction.coadd.psf import PSFModel, homogenise

#: flag bits of tile catalogs (above sep's own flags, which use bits 0-8).
FLAG_NO_DATA = 1 << 10
FLAG_PSF_FAILED = 1 << 11


@dataclass(frozen=True)
class CatalogConfig:
    """Detection and measurement knobs.

    Attributes:
        detect_nsigma: detection threshold, per pixel, in units of the noise; minarea: pixels;
        apertures_arcsec: diameters of the circular apertures, arcsec; kron_factor: Kron
        radius multiple (2.5); min_kron_radius: (3.5, units of a); deblend_cont: sep.
    """

    detect_nsigma: float = 1.5
    minarea: int = 5
    apertures_arcsec: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)
    kron_factor: float = 2.5
    min_kron_radius: float = 3.5
    deblend_cont: float = 0.005


@dataclass(frozen=True)
class Detections:
    """Sources detected on a tile (arrays of length n, pixel units, 0-based).

    Attributes:
        x, y: barycentres; a, b, theta: shape (pixels, rad); kron_radius: in units of a;
        flags: sep extraction flags.
    """

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    kron_radius: np.ndarray
    flags: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Photometry:
    """One band's measurements of the :class:`Detections` (flux units of the co-add).

    Attributes:
        flux_aper, flux_err_aper: (n, k) in the k apertures; flux_auto, flux_err_auto: Kron;
        flux_psf, flux_err_psf: PSF fit; flags: (n,) int, sep flags | FLAG_* bits.
    """

    flux_aper: np.ndarray
    flux_err_aper: np.ndarray
    flux_auto: np.ndarray
    flux_err_auto: np.ndarray
    flux_psf: np.ndarray
    flux_err_psf: np.ndarray
    flags: np.ndarray


def _noise(image: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nodata = (weight <= 0) | ~np.isfinite(image)
    err = np.where(nodata, 0.0, 1.0 / np.sqrt(np.where(nodata, 1.0, weight)))
    data = np.where(nodata, 0.0, image)
    return (np.ascontiguousarray(data, np.float32), np.ascontiguousarray(err, np.float32), nodata)


def detect_sources(
    image: np.ndarray, weight: np.ndarray, config: CatalogConfig = CatalogConfig()
) -> Detections:
    """Detect sources on a background-subtracted co-add.

    Args:
        image: (ny, nx) flux (NaN: no data); weight: (ny, nx) inverse variance.

    Returns:
        :class:`Detections`, with Kron radii measured on ``image``.
    """
    data, err, nodata = _noise(image, weight)
    objs = sep.extract(
        data, config.detect_nsigma, err=err, mask=nodata, minarea=config.minarea,
        deblend_cont=config.deblend_cont,
    )  # fmt: skip
    x, y = objs["x"], objs["y"]
    a, b = np.maximum(objs["a"], 0.5), np.maximum(objs["b"], 0.5)
    theta = np.clip(objs["theta"], -np.pi / 2, np.pi / 2)
    kr, kflag = sep.kron_radius(data, x, y, a, b, theta, 6.0, mask=nodata)
    kr = np.where(np.isfinite(kr) & (kr > 0), kr, config.min_kron_radius)
    return Detections(x, y, a, b, theta, kr, objs["flag"].astype(np.int64) | kflag)


def psf_fluxes(
    data: np.ndarray, err: np.ndarray, x: np.ndarray, y: np.ndarray, stamp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PSF fluxes and errors at fixed positions: the weighted least-squares amplitude of the
    normalised ``stamp`` shifted to each (x, y) (NaN where the stamp leaves the image)."""
    n = stamp.shape[0]
    half = n // 2
    ny, nx = data.shape
    flux = np.full(len(x), np.nan)
    ferr = np.full(len(x), np.nan)
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        x0, y0 = int(round(xi)), int(round(yi))
        if x0 - half < 0 or y0 - half < 0 or x0 + half >= nx or y0 + half >= ny:
            continue
        p = ndimage.shift(stamp, (yi - y0, xi - x0), order=3, mode="constant")
        d = data[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1]
        e = err[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1]
        e = e.astype(np.float64)
        w = np.where(e > 0, 1.0 / np.maximum(e, 1e-30) ** 2, 0.0)
        den = float((w * p * p).sum())
        if den > 0:
            flux[i] = float((w * p * d).sum()) / den
            ferr[i] = 1.0 / np.sqrt(den)
    return flux, ferr


def measure(
    image: np.ndarray,
    weight: np.ndarray,
    det: Detections,
    psf: np.ndarray,
    pixel_scale: float,
    config: CatalogConfig = CatalogConfig(),
) -> Photometry:
    """Measure one band at the detections' positions and shapes.

    Args:
        image: (ny, nx) background-subtracted flux; weight: inverse variance;
        psf: (m, m) normalised PSF stamp of ``image``; pixel_scale: arcsec/pixel.

    Returns:
        :class:`Photometry`.
    """
    data, err, nodata = _noise(image, weight)
    n = len(det)
    radii = [d / 2.0 / pixel_scale for d in config.apertures_arcsec]
    flux_aper = np.full((n, len(radii)), np.nan)
    ferr_aper = np.full((n, len(radii)), np.nan)
    flags = det.flags.copy()
    if n == 0:
        empty = np.zeros(0)
        return Photometry(flux_aper, ferr_aper, empty, empty, empty, empty, flags)
    for k, r in enumerate(radii):
        f, fe, fl = sep.sum_circle(data, det.x, det.y, r, err=err, mask=nodata, subpix=5)
        flux_aper[:, k], ferr_aper[:, k] = f, fe
        flags |= fl
    kr = np.maximum(det.kron_radius, config.min_kron_radius) * config.kron_factor / 2.5
    fa, fae, fl = sep.sum_ellipse(
        data, det.x, det.y, det.a, det.b, det.theta, 2.5 * kr, err=err, mask=nodata, subpix=1
    )
    flags |= fl
    masked, _, _ = sep.sum_circle(nodata.astype(np.float32), det.x, det.y, max(radii), subpix=1)
    flags |= np.where(masked > 0, FLAG_NO_DATA, 0)
    fp, fpe = psf_fluxes(data, err, det.x, det.y, psf)
    flags |= np.where(np.isfinite(fp), 0, FLAG_PSF_FAILED)
    return Photometry(flux_aper, ferr_aper, fa, fae, fp, fpe, flags.astype(np.int64))


def single_mode(
    image: np.ndarray,
    weight: np.ndarray,
    psf: PSFModel,
    pixel_scale: float,
    config: CatalogConfig = CatalogConfig(),
) -> tuple[Detections, Photometry]:
    """Detect and measure on one band's co-add (seed 002 single-mode catalog)."""
    det = detect_sources(image, weight, config)
    return det, measure(image, weight, det, psf.stamp, pixel_scale, config)


@dataclass(frozen=True)
class DualCatalog:
    """A dual-mode catalog: detections on the reference band, photometry per band on images
    homogenised to ``target_fwhm`` (pixels)."""

    reference: str
    detections: Detections
    photometry: dict[str, Photometry]
    target_fwhm: float


def dual_mode(
    images: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
    psfs: Mapping[str, PSFModel],
    pixel_scale: float,
    *,
    reference: str = "r",
    config: CatalogConfig = CatalogConfig(),
) -> DualCatalog:
    """Dual-mode catalog of one tile's bands (seed 002).

    Detection on the un-convolved ``reference`` band; each band (reference included) is
    convolved to the worst PSF of all bands and measured there, with the PSF stamp convolved
    alike. Per-pixel noise is taken from the un-convolved weight map, so errors of convolved
    images are upper bounds.

    Raises:
        ValueError: ``reference`` is not among the bands, or the bands' shapes differ.
    """
    if reference not in images:
        raise ValueError(f"reference band {reference!r} not among {sorted(images)}")
    if len({im.shape for im in images.values()}) != 1:
        raise ValueError("dual mode needs the bands of one tile on one grid")
    det = detect_sources(images[reference], weights[reference], config)
    target = max(p.fwhm for p in psfs.values())
    phot = {}
    for band, img in images.items():
        fwhm = psfs[band].fwhm
        conv = homogenise(img, fwhm, target)
        conv[~np.isfinite(img)] = np.nan
        stamp = homogenise(psfs[band].stamp, fwhm, target)
        phot[band] = measure(conv, weights[band], det, stamp / stamp.sum(), pixel_scale, config)
    return DualCatalog(reference, det, phot, target)
