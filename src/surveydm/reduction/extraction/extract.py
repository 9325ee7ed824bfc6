"""Source extraction of one detrended CCD image, as its documented steps."""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from surveydm.reduction.extraction.aperture import MASK_FLAG_SHIFT, aperture_photometry
from surveydm.reduction.extraction.background import Background
from surveydm.reduction.extraction.catalog import SourceMeasurements, empty_catalog
from surveydm.reduction.extraction.centroids import centroid_errors, windowed_centroids
from surveydm.reduction.extraction.config import ExtractionConfig
from surveydm.reduction.extraction.detection import detect
from surveydm.reduction.extraction.image import ExtractionError, measurement_image
from surveydm.reduction.extraction.kron import kron_photometry
from surveydm.reduction.extraction.psf_steps import (
    class_star,
    fit_psf_model,
    fit_psf_sources,
    psf_error_floor,
    source_fwhm,
)

__all__ = ["extract_sources"]

_DEFAULT_CONFIG = ExtractionConfig()


def extract_sources(
    image: np.ndarray,
    *,
    background: Background,
    pixel_scale: float,
    mask: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    weight_kind: str = "total",
    gain: float = 1.0,
    saturation: float | None = None,
    config: ExtractionConfig = _DEFAULT_CONFIG,
) -> Table:
    """Detect and measure sources on a detrended CCD image (sep, SExtractor conventions).

    Method: Bertin & Arnouts (1996) detection and measurements through sep (Barbary 2016),
    Kron (1980) fluxes, a pixel-integrated Moffat PSF fitted per CCD with PSF-fit centroids and
    fluxes (as IPP's psphot, Magnier et al. 2016) and SPREAD_MODEL (Desai et al. 2012); see
    docs/reduction-catalogs.md. The steps: detection, Kron photometry, half-light radii and
    windowed centroids, PSF model, PSF photometry, centroid errors, fixed aperture, PSF-flux
    floor, catalog.

    Args:
        image: (ny, nx) detrended image, electrons (converted once to native float32; NaN/inf
            pixels are measured as masked, ``NO_DATA``).
        background: the :func:`measure_background` model; it is subtracted before measuring.
        pixel_scale: arcsec per pixel, to convert the aperture radius.
        mask: (ny, nx) uint16 ``MaskBit`` mask. Masked pixels are interpolated in the
            detection image (as SExtractor does with zero-weight pixels; bits in
            ``config.detection_ignored_bits``, EDGE by default, are detected as they are); all
            flagged pixels are excluded from flux sums and reported in ``flags``.
        weight: (ny, nx) inverse variance, e-^-2; zero weight masks a pixel (interpolated
            for detection, left out of measurements). Without it the background RMS map
            is the noise and the source Poisson term is added.
        weight_kind: what ``weight`` holds. "total" (default): the full per-pixel variance
            including the objects' own Poisson noise, as made by
            ``surveydm.reduction.weights.weight_map``; flux errors sum it directly, while
            detection and PSF-fit weights use the background RMS map. "background": sky +
            read noise only (SExtractor ``MAP_WEIGHT``); flux errors add ``flux / gain``.
        gain: e- per image unit for the source Poisson term (1.0 for images in electrons).
        saturation: if given, sources whose peak (background included, e-) reaches it get the
            ``SATURATED`` mask bit even if the mask does not have it.
        config: the detection and measurement knobs (:class:`ExtractionConfig`).

    Returns:
        Table with one row per source and the columns :data:`CATALOG_COLUMNS`: ``x, y``
        (0-based pixels: PSF-fit centre, or the windowed centroid where the PSF fit did not
        converge), ``xerr, yerr`` (pixels), ``x_win, y_win`` (windowed centroids), ``x_iso,
        y_iso`` (isophotal barycentres), ``flux_auto, flux_err_auto`` (Kron, e-), ``flux_aper,
        flux_err_aper`` (fixed aperture, e-), ``flux_psf, flux_err_psf`` (PSF fit, total flux
        of a point source, e-; NaN without a PSF model), ``kron_radius`` (units of a, b),
        ``flux_radius`` (half-light radius, pixels), ``a, b`` (pixels), ``theta`` (rad, from
        +x towards +y), ``elongation`` (a/b), ``fwhm`` (pixels, see docs), ``spread_model,
        spreaderr_model, class_star`` (star/galaxy), ``snr`` (flux_auto / flux_err_auto),
        ``background`` (e-/pixel at the source), ``peak`` (e-, background subtracted),
        ``isoarea`` (pixels), ``flags`` and ``mask_flags`` (see the package docstring).
        ``meta``: ``aperture_radius_pix``, ``threshold_sigma`` and, with a PSF model,
        ``psf_alpha_pix``, ``psf_beta``, ``psf_fwhm_pix``, ``psf_nstars``, ``psf_flux_floor``
        (fractional error added in quadrature to ``flux_err_psf``; NaN when not measured).

    Raises:
        ExtractionError: bad shapes, non-positive gain/scale/noise, or a sep failure (the
            message says which input to fix).

    Example:
        >>> import numpy as np
        >>> from surveydm.reduction.extraction import (
        ...     ExtractionConfig, extract_sources, measure_background)
        >>> rng = np.random.default_rng(0)
        >>> image = rng.normal(100.0, 10.0, (256, 256)).astype(np.float32)
        >>> image[100:103, 60:63] += 2000.0
        >>> bkg = measure_background(image)
        >>> cat = extract_sources(image, background=bkg, pixel_scale=0.5,
        ...                       config=ExtractionConfig(threshold=5.0, psf_model=False))
        >>> len(cat), round(float(cat["x"][0]))
        (1, 61)
    """
    if not (pixel_scale > 0 and math.isfinite(pixel_scale)):
        raise ExtractionError(f"pixel_scale must be positive (arcsec/pixel), got {pixel_scale}")
    img = measurement_image(
        image, background, mask=mask, weight=weight, weight_kind=weight_kind, gain=gain,
        detection_ignored_bits=config.detection_ignored_bits,
    )  # fmt: skip
    r_ap = config.aperture_radius_arcsec / pixel_scale
    det = detect(img, config)
    if len(det) == 0:
        return empty_catalog(r_ap)
    kron = kron_photometry(img, det, config)
    win = windowed_centroids(img, det)
    model = fit_psf_model(img, det, kron, win, r_ap, saturation, config)
    fit = fit_psf_sources(img, win, model.psf, kron.snr, config, model)
    xerr, yerr = centroid_errors(img, det, win, fit.used, fit.xerr, fit.yerr)
    aper = aperture_photometry(img, fit.x, fit.y, r_ap, det.peak_level, saturation)
    flags = (det.flags | kron.flags | aper.flags).astype(np.int64)
    flags |= aper.mask_bits << MASK_FLAG_SHIFT
    stellarity = class_star(fit.spread_model, fit.spreaderr_model)
    floor = psf_error_floor(
        model, fit, aper, flags, kron.snr, stellarity, r_ap, config.floor_min_snr
    )
    flux_err_psf = fit.flux_err
    if np.isfinite(floor):
        flux_err_psf = np.hypot(fit.flux_err, floor * fit.flux)
    return SourceMeasurements(
        det=det, kron=kron, win=win, psf_model=model, psf_fit=fit, aper=aper, xerr=xerr,
        yerr=yerr, flags=flags, class_star=stellarity, flux_err_psf=flux_err_psf,
        psf_floor=floor, fwhm=source_fwhm(win, model), aperture_radius_pix=r_ap,
        threshold=config.threshold,
    ).table()  # fmt: skip
