"""Background estimation and source extraction on detrended CCD images (sep).

The image is a detrended (ny, nx) float32 array in electrons, with a uint16 bit mask
(``reduction.masks.MaskBit`` codes) and a float32 weight map (inverse variance of the sky + read
noise, electrons^-2). The measurements follow SExtractor (Bertin & Arnouts 1996) as implemented
by sep (Barbary 2016): isophotal detection on the background-subtracted image, Kron (AUTO)
fluxes, fixed circular aperture fluxes, windowed centroids (XWIN/YWIN) and half-light radii.

Flux errors include the background variance of every pixel and the Poisson noise of the
source itself: taken from a total-variance weight map (surveydm's ``weight_map``), or added as
``flux / gain`` (``gain`` e-/count; 1 for images in electrons) to a background-only weight map
or the background RMS map. The pull distribution (measured - true) / error of point sources
then has unit width (tests/test_reduction_extraction.py).

Positions: SExtractor windowed centroids (XWIN), replaced by PSF-fit centroids where the PSF
model (a pixel-integrated Moffat fitted to the CCD's stars, see ``reduction.psf``) converges.
For undersampled images (FWHM ~ 1 pixel) windowed centroids carry pixel-phase errors of
0.03-0.1 pixel; the PSF fits do not.

Flag convention of the output ``flags`` column (int32):

* bits 0-7: sep extraction/aperture flags (``sep.OBJ_MERGED`` = 1, ``sep.OBJ_TRUNC`` = 2,
  ``sep.OBJ_DOVERFLOW`` = 4, ``sep.OBJ_SINGU`` = 8, ``sep.APER_TRUNC`` = 16,
  ``sep.APER_HASMASKED`` = 32, ``sep.APER_ALLMASKED`` = 64, ``sep.APER_NONPOSITIVE`` = 128);
* bits 8 and up: the OR of the mask bits (``MaskBit``) of the pixels inside the fixed aperture,
  shifted left by :data:`MASK_FLAG_SHIFT` (also given unshifted in the ``mask_flags`` column).

So ``flags == 0`` means a clean, isolated, unmasked detection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import sep
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from scipy import ndimage
from scipy.spatial import cKDTree

from surveydm.errors import SurveydmError
from surveydm.reduction.masks import MaskBit
from surveydm.reduction.psf import (
    MoffatPsf,
    PsfError,
    fit_moffat_psf,
    psf_photometry,
    select_psf_stars,
    spread_model,
)
from surveydm.reduction.stamps import pixel_stamps

__all__ = [
    "CATALOG_COLUMNS",
    "MASK_FLAG_SHIFT",
    "Background",
    "ExtractionError",
    "measure_background",
    "extract_sources",
    "pixel_stamps",
    "psf_flux_floor",
]

#: ``flags`` holds the aperture mask bits shifted left by this many bits.
MASK_FLAG_SHIFT = 8

_SATURATED = int(MaskBit.SATURATED)
_BLEED = int(MaskBit.BLEED)
_NO_DATA = int(MaskBit.NO_DATA)

#: Mask bits that do not hide pixels from detection: a saturated star must still be detected
#: (and then flagged), or its core would split it into a ring of spurious fragments.
DEFAULT_DETECTION_IGNORED_BITS = _SATURATED | _BLEED

#: sep deblending sub-object limits tried in turn (sep's default is 1024).
_SUB_OBJECT_LIMITS = (4096, 32768)

#: Median of the chi-square distribution with one degree of freedom.
_CHI2_1_MEDIAN = 0.4549364231195724

#: PSF stars wanted in the S/N window before brighter stars are admitted to the PSF model.
_MIN_PSF_STARS = 10

_GAUSS_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM / sigma of a Gaussian
_GAUSS_RHALF = math.sqrt(2.0 * math.log(2.0))  # half-light radius / sigma of a 2-D Gaussian


class ExtractionError(SurveydmError):
    """The inputs of background estimation or source extraction are unusable."""


@dataclass(frozen=True)
class Background:
    """Sky background model of one CCD image.

    Attributes:
        image: (ny, nx) float32 background level, electrons.
        rms: (ny, nx) float32 background noise, electrons.
        global_level: median background level over the image, electrons.
        global_rms: global background noise, electrons.
    """

    image: np.ndarray
    rms: np.ndarray
    global_level: float
    global_rms: float


def _as_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ExtractionError(f"{name} must be a 2-D (ny, nx) array, got shape {arr.shape}")
    if arr.size == 0:
        raise ExtractionError(f"{name} is empty")
    if arr.dtype != np.float32 or not arr.dtype.isnative:
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def _as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != shape:
        raise ExtractionError(f"mask shape {m.shape} does not match image shape {shape}")
    if not np.issubdtype(m.dtype, np.integer) and m.dtype != np.bool_:
        raise ExtractionError(f"mask must be an integer bit mask, got dtype {m.dtype}")
    return m


def measure_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box: int = 64,
    filter_size: int = 3,
    filter_threshold: float = 0.0,
) -> Background:
    """Estimate the sky background and its noise on a mesh (sep / SExtractor method).

    Args:
        image: (ny, nx) detrended image, electrons (converted to native float32).
        mask: optional (ny, nx) integer bit mask; pixels with any bit set are ignored.
        box: mesh cell size in pixels (``BACK_SIZE``).
        filter_size: median filter size in mesh cells (``BACK_FILTERSIZE``).
        filter_threshold: only filter cells that deviate more than this (``BACK_FILTERTHRESH``).

    Returns:
        :class:`Background` with float32 level and RMS maps and the global values; mesh
        cells of constant pixels (zero RMS) take the median RMS of the others.

    Raises:
        ExtractionError: bad shapes/dtypes, non-positive box, an image sep cannot model, or
            an image without any noise.

    Method: clipped mode estimator per mesh cell, median filtered and bicubic-spline
    interpolated (Bertin & Arnouts 1996, sect. 3.1; sep.Background).
    """
    data = _as_image(image)
    m = _as_mask(mask, data.shape)
    if box < 2 or filter_size < 1:
        raise ExtractionError(f"box must be >= 2 and filter_size >= 1 (got {box}, {filter_size})")
    bad = None if m is None else np.ascontiguousarray(m != 0)
    try:
        bkg = sep.Background(
            data,
            mask=bad,
            bw=int(box),
            bh=int(box),
            fw=int(filter_size),
            fh=int(filter_size),
            fthresh=float(filter_threshold),
        )
    except Exception as exc:  # sep raises plain Exception subclasses with C messages
        raise ExtractionError(f"background estimation failed: {exc}") from exc
    rms = bkg.rms(dtype=np.float32)
    flat_cells = ~(rms > 0) | ~np.isfinite(rms)
    if flat_cells.any():
        # Cells of constant pixels (a filled-in region, a stuck amplifier) have zero noise
        # and would make every later noise map invalid: they take the median noise of the
        # others (sep's global RMS is 1.0 on a constant image, not a measurement).
        if flat_cells.all():
            raise ExtractionError("background estimation failed: no pixel has any noise")
        rms[flat_cells] = np.median(rms[~flat_cells])
    return Background(
        image=bkg.back(dtype=np.float32),
        rms=rms,
        global_level=float(bkg.globalback),
        global_rms=float(bkg.globalrms),
    )


def level_background(
    image: np.ndarray,
    background: Background,
    mask: np.ndarray | None = None,
    *,
    threshold: float = 2.0,
    grow: int = 3,
    clip_sigma: float = 4.0,
) -> tuple[Background, float]:
    """Shift ``background`` to the mean level of the pixels that hold no detected source.

    sep's mesh estimator (SExtractor's clipped mode, 2.5 median - 1.5 mean) assumes sky pixels
    scatter symmetrically about the sky. Residual patterns skew them: a fringe frame made from
    few dithers carries the other exposures' faint sources, positive or negative, and on the
    demo night the map was 8-20 e- (~0.1 sigma) off the mean sky of those CCDs, which moved
    their zero-points by up to 0.02 mag. For aperture sums the unbiased level is the mean of the
    source-free pixels: sources are detected ``threshold`` sigma above the map (no
    deblending), their segments grown by ``grow`` pixels and masked with ``mask``; the rest is
    sigma-clipped at ``clip_sigma`` (cosmic rays, hot pixels) and averaged.

    Args:
        image: (ny, nx) image, electrons.
        background: its :func:`measure_background` model.
        mask: optional (ny, nx) integer bit mask; nonzero pixels are not used.
        threshold, grow, clip_sigma: see above.

    Returns:
        (the shifted background, the offset added in electrons; 0 when fewer than 1,000
        source-free pixels remain in the every-other-pixel sample).

    Raises:
        ExtractionError: shapes differ or the detection fails.
    """
    data = _as_image(image)
    m = _as_mask(mask, data.shape)
    if background.image.shape != data.shape:
        raise ExtractionError("background maps do not match the image shape")
    bad = np.zeros(data.shape, bool) if m is None else m != 0
    resid = data - background.image
    _, seg = _sep_extract(
        resid,
        float(threshold),
        err=np.ascontiguousarray(background.rms, dtype=np.float32),
        mask=bad,
        minarea=5,
        deblend_cont=1.0,
        segmentation_map=True,
    )
    free = ~(ndimage.binary_dilation(seg > 0, iterations=grow) if grow > 0 else seg > 0)
    free &= ~bad
    # every other pixel in both axes: ample for one mean, 4x cheaper to clip
    sample = resid[::2, ::2][free[::2, ::2]]
    if sample.size < 1000:
        return background, 0.0
    offset, _, _ = sigma_clipped_stats(sample, sigma=clip_sigma, maxiters=5)
    offset = float(offset)
    shifted = replace(
        background,
        image=background.image + np.float32(offset),
        global_level=background.global_level + offset,
    )
    return shifted, offset


def _noise_maps(
    data: np.ndarray,
    background: Background,
    mask: np.ndarray | None,
    weight: np.ndarray | None,
    weight_kind: str,
    detection_ignored_bits: int,
) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray | None, np.ndarray | None]:
    """Noise maps and masks for extraction.

    Returns ``(err_bkg, err_sum, add_poisson, det_mask, meas_mask)``: the background-only
    sigma (detection threshold, PSF-fit weights), the sigma for flux sums, whether the source
    Poisson term must be added to ``err_sum``, and the detection / measurement masks.
    """
    if background.image.shape != data.shape or background.rms.shape != data.shape:
        raise ExtractionError("background maps do not match the image shape")
    if weight_kind not in ("total", "background"):
        raise ExtractionError(f"weight_kind must be 'total' or 'background', got {weight_kind!r}")
    rms = np.ascontiguousarray(background.rms, dtype=np.float32)
    zero_w = None
    if weight is not None:
        w = np.asarray(weight, dtype=np.float32)
        if w.shape != data.shape:
            raise ExtractionError(f"weight shape {w.shape} does not match image {data.shape}")
        good_w = (w > 0) & (w < np.inf)  # False for NaN
        if good_w.all():
            err_w = np.sqrt(w)
            np.reciprocal(err_w, out=err_w)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                err_w = np.where(good_w, 1.0 / np.sqrt(np.where(good_w, w, 1.0)), rms)
            zero_w = ~good_w
        err_w = np.ascontiguousarray(err_w, dtype=np.float32)
        if weight_kind == "total":
            err_bkg, err_sum, add_poisson = rms, err_w, False
        else:
            err_bkg, err_sum, add_poisson = err_w, err_w, True
    else:
        err_bkg, err_sum, add_poisson = rms, rms, True
    for arr in {id(err_bkg): err_bkg, id(err_sum): err_sum}.values():
        lo, hi = float(arr.min()), float(arr.max())
        if not (lo > 0 and math.isfinite(hi)):
            raise ExtractionError("noise map has non-positive or non-finite values")

    det_mask = None
    meas_mask = None
    ignored = int(detection_ignored_bits)
    if mask is not None:
        m64 = mask.astype(np.int64, copy=False)
        det_mask = (m64 & ~ignored) != 0
        meas_mask = mask != 0
    if zero_w is not None and zero_w.any():
        # Zero weight hides a pixel from detection unless its only mask bits are ignored ones
        # (the surveydm weight map zeroes saturated pixels, which must still be detected).
        hide = zero_w if mask is None else (zero_w & ~((mask != 0) & ~det_mask))
        det_mask = hide if det_mask is None else (det_mask | hide)
        meas_mask = zero_w if meas_mask is None else (meas_mask | zero_w)
    if det_mask is not None:
        det_mask = np.ascontiguousarray(det_mask)
    if meas_mask is not None:
        meas_mask = np.ascontiguousarray(meas_mask)
    return err_bkg, err_sum, add_poisson, det_mask, meas_mask


#: Output columns of :func:`extract_sources`, in order (integer columns in ``_INT_COLUMNS``).
CATALOG_COLUMNS = (
    "x", "y", "xerr", "yerr", "x_win", "y_win", "x_iso", "y_iso",
    "flux_auto", "flux_err_auto", "flux_aper", "flux_err_aper", "flux_psf", "flux_err_psf",
    "kron_radius", "flux_radius", "a", "b", "theta", "elongation", "fwhm",
    "spread_model", "spreaderr_model", "class_star", "snr", "background", "peak",
    "isoarea", "flags", "mask_flags",
)  # fmt: skip
_INT_COLUMNS = ("isoarea", "flags", "mask_flags")


def _empty_catalog() -> Table:
    return Table(
        {
            n: np.zeros(0, dtype=np.int32 if n in _INT_COLUMNS else np.float64)
            for n in CATALOG_COLUMNS
        }
    )


def extract_sources(
    image: np.ndarray,
    *,
    background: Background,
    mask: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    gain: float = 1.0,
    threshold: float = 1.5,
    minarea: int = 5,
    aperture_radius_arcsec: float = 2.0,
    pixel_scale: float,
    kron_factor: float = 2.5,
    min_kron_radius: float = 3.5,
    deblend_nthresh: int = 32,
    deblend_cont: float = 0.005,
    filter_kernel: np.ndarray | None | str = "default",
    saturation: float | None = None,
    detection_ignored_bits: int = DEFAULT_DETECTION_IGNORED_BITS,
    psf_model: bool = True,
    max_psf_stars: int = 60,
    weight_kind: str = "total",
    psf_max_snr: float | None = 100.0,
    width_fit_snr: float | None = 100.0,
    floor_min_snr: float | None = 50.0,
) -> Table:
    """Detect and measure sources on a detrended CCD image (sep, SExtractor conventions).

    Method: Bertin & Arnouts (1996) detection and measurements through sep (Barbary 2016),
    a pixel-integrated Moffat PSF fitted per CCD with PSF-fit centroids and fluxes (as IPP's
    psphot, Magnier et al. 2016) and SPREAD_MODEL (Desai et al. 2012); see
    docs/reduction-catalogs.md.

    Args:
        image: (ny, nx) detrended image, electrons (converted once to native float32).
        background: the :func:`measure_background` model; it is subtracted before measuring.
        mask: (ny, nx) uint16 ``MaskBit`` mask. Pixels with bits other than
            ``detection_ignored_bits`` (saturated, bleed) are excluded from detection; all
            flagged pixels are excluded from flux sums and reported in ``flags``.
        weight: (ny, nx) inverse variance, e-^-2; zero weight masks a pixel (saturated and
            bleed pixels are still detected, then flagged). Without it the background RMS map
            is the noise and the source Poisson term is added.
        weight_kind: what ``weight`` holds. "total" (default): the full per-pixel variance
            including the objects' own Poisson noise, as made by
            ``surveydm.reduction.weights.weight_map``; flux errors sum it directly, while
            detection and PSF-fit weights use the background RMS map. "background": sky +
            read noise only (SExtractor ``MAP_WEIGHT``); flux errors add ``flux / gain``.
        gain: e- per image unit for the source Poisson term (1.0 for images in electrons).
        threshold: detection threshold in units of the per-pixel noise sigma.
        minarea: minimum number of connected pixels above threshold.
        aperture_radius_arcsec: radius of the fixed circular aperture (``flux_aper``).
        pixel_scale: arcsec per pixel, to convert the aperture radius.
        kron_factor, min_kron_radius: Kron aperture ``k * r_kron`` and the minimum diameter
            in pixels below which a circle is used (SExtractor ``PHOT_AUTOPARAMS 2.5, 3.5``).
        deblend_nthresh, deblend_cont: sep deblending parameters.
        filter_kernel: detection filter; "default" is sep's 3x3 pyramid, None disables it.
        saturation: if given, sources whose peak (background included) reaches it get the
            ``SATURATED`` mask bit even if the mask does not have it.
        detection_ignored_bits: mask bits that do not hide pixels from detection.
        psf_model: fit a Moffat PSF to the stellar locus (needs >= 5 stars with S/N >= 30)
            and PSF-fit every source (positions, ``flux_psf``, ``spread_model``).
        max_psf_stars: brightest PSF stars used for the model.
        psf_max_snr: PSF-model stars are taken from the stellar locus of S/N 30 to this
            (None: no upper limit); with fewer than 10 there, from all S/N >= 30 stars.
        width_fit_snr: sources with S/N >= this also fit the PSF width (alpha) per source
            (``psf.psf_photometry`` ``fit_width``); None disables.
        floor_min_snr: S/N of the bright isolated point sources on which the PSF-model
            mismatch floor of ``flux_err_psf`` is measured (:func:`psf_flux_floor`); None
            disables the floor.

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
        ``isoarea`` (pixels), ``flags`` and ``mask_flags`` (see the module docstring).
        ``meta``: ``aperture_radius_pix``, ``threshold_sigma`` and, with a PSF model,
        ``psf_alpha_pix``, ``psf_beta``, ``psf_fwhm_pix``, ``psf_nstars``, ``psf_flux_floor``
        (fractional error added in quadrature to ``flux_err_psf``; NaN when not measured).

    Raises:
        ExtractionError: bad shapes, non-positive gain/scale/noise, or a sep failure.
    """
    data = _as_image(image)
    m = _as_mask(mask, data.shape)
    if not (gain > 0 and math.isfinite(gain)):
        raise ExtractionError(f"gain must be positive, got {gain}")
    if not (pixel_scale > 0 and math.isfinite(pixel_scale)):
        raise ExtractionError(f"pixel_scale must be positive (arcsec/pixel), got {pixel_scale}")
    if aperture_radius_arcsec <= 0:
        raise ExtractionError("aperture_radius_arcsec must be positive")
    finite = np.isfinite(data)
    if not finite.all():  # NaN/inf pixels: measured as masked (NO_DATA), never propagated
        data = np.where(finite, data, np.float32(0.0))
        m = np.where(finite, 0 if m is None else m, _NO_DATA).astype(np.uint16)
    err, err_sum, add_poisson, det_mask, meas_mask = _noise_maps(
        data, background, m, weight, weight_kind, detection_ignored_bits
    )
    sum_gain = gain if add_poisson else None
    sub = data - background.image
    sub = np.ascontiguousarray(sub, dtype=np.float32)

    kwargs = {}
    if isinstance(filter_kernel, str):
        if filter_kernel != "default":
            raise ExtractionError(f"unknown filter_kernel {filter_kernel!r}")
    else:
        kwargs["filter_kernel"] = filter_kernel
    objs = _sep_extract(
        sub,
        float(threshold),
        err=err,
        mask=det_mask,
        minarea=int(minarea),
        deblend_nthresh=int(deblend_nthresh),
        deblend_cont=float(deblend_cont),
        **kwargs,
    )
    if len(objs) == 0:
        cat = _empty_catalog()
        cat.meta["aperture_radius_pix"] = aperture_radius_arcsec / pixel_scale
        return cat

    x0 = objs["x"].astype(np.float64)
    y0 = objs["y"].astype(np.float64)
    a = np.maximum(objs["a"].astype(np.float64), 0.1)
    b = np.maximum(objs["b"].astype(np.float64), 0.1)
    theta = objs["theta"].astype(np.float64)
    theta = np.clip(theta, -np.pi / 2 + 1e-6, np.pi / 2 - 1e-6)
    flags = objs["flag"].astype(np.int32)

    # Kron (AUTO) flux, with a circular aperture of diameter min_kron_radius for small objects.
    kronrad, kflag = sep.kron_radius(sub, x0, y0, a, b, theta, 6.0, mask=meas_mask)
    kronrad = np.where(np.isfinite(kronrad) & (kronrad > 0), kronrad, 0.0)
    flags |= kflag.astype(np.int32)
    flux_auto, ferr_auto, fflag = sep.sum_ellipse(
        sub,
        x0,
        y0,
        a,
        b,
        theta,
        kron_factor * np.maximum(kronrad, 1e-3),
        err=err_sum,
        gain=sum_gain,
        mask=meas_mask,
        subpix=1,
    )
    r_min = 0.5 * min_kron_radius
    small = kronrad * kron_factor * np.sqrt(a * b) < r_min
    if small.any():
        cf, cfe, cfl = sep.sum_circle(
            sub, x0[small], y0[small], r_min, err=err_sum, gain=sum_gain, mask=meas_mask, subpix=1
        )
        flux_auto[small], ferr_auto[small], fflag[small] = cf, cfe, cfl
    flags |= fflag.astype(np.int32)

    # Half-light radius, then windowed centroid with the SExtractor window sigma.
    # (normalised by the flux within rmax, as on the PSF model in _model_flux_radius)
    rmax = np.maximum(6.0 * a, 4.0)
    flux_radius, rflag = sep.flux_radius(sub, x0, y0, rmax, 0.5, mask=meas_mask, subpix=5)
    flux_radius = np.where(np.isfinite(flux_radius) & (flux_radius > 0), flux_radius, np.nan)
    sig = 2.0 * np.nan_to_num(flux_radius, nan=1.0) / _GAUSS_FWHM
    sig = np.clip(sig, 0.5, 20.0)
    xwin, ywin, wflag = sep.winpos(sub, x0, y0, sig, mask=meas_mask, subpix=5)
    bad_win = (wflag != 0) | ~np.isfinite(xwin) | ~np.isfinite(ywin)
    bad_win |= np.hypot(xwin - x0, ywin - y0) > 2.0 * np.maximum(a, 1.0)
    x = np.where(bad_win, x0, xwin)
    y = np.where(bad_win, y0, ywin)

    xwin_col, ywin_col = x.copy(), y.copy()

    r_ap = aperture_radius_arcsec / pixel_scale
    xi = np.clip(np.rint(x0).astype(np.int64), 0, data.shape[1] - 1)
    yi = np.clip(np.rint(y0).astype(np.int64), 0, data.shape[0] - 1)
    bkg_at = background.image[yi, xi].astype(np.float64)
    peak = objs["peak"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(ferr_auto > 0, flux_auto / ferr_auto, 0.0)
    elongation = a / b

    # PSF model from the stellar locus, then PSF fits of every source.
    psf = None
    n_src = len(objs)
    flux_psf = np.full(n_src, np.nan)
    ferr_psf = np.full(n_src, np.nan)
    sm = np.full(n_src, np.nan)
    sme = np.full(n_src, np.nan)
    if psf_model:
        pre_mask = _aperture_mask_bits(m, x, y, max(r_ap, 3.0), saturation, peak + bkg_at)
        pre = Table(
            {
                "snr": snr,
                "elongation": elongation,
                "flux_radius": flux_radius,
                "flags": flags.astype(np.int64) | (pre_mask << MASK_FLAG_SHIFT),
            }
        )
        # Stars of S/N 30 to psf_max_snr make the model: they represent the bulk of the sources
        # measured with it, free of the non-linearity and brighter-fatter broadening of stars
        # near saturation (brighter stars get their own width, width_fit_snr). Without
        # enough of them, brighter stars are taken.
        stars = np.zeros(0, dtype=np.int64)
        if psf_max_snr is not None:
            # among S/N 30-100 sources compact galaxies can outnumber the stars
            sel = select_psf_stars(
                pre,
                size_column="flux_radius",
                min_snr=30.0,
                max_snr=psf_max_snr,
                locus="smallest",
            )
            stars = np.nonzero(sel)[0]
        if len(stars) < _MIN_PSF_STARS:
            stars = np.nonzero(select_psf_stars(pre, size_column="flux_radius", min_snr=30.0))[0]
        stars = stars[np.argsort(-snr[stars])][:max_psf_stars]
        if len(stars) >= 5:
            fwhm0 = 2.0 * float(np.median(flux_radius[stars]))
            try:
                psf = fit_moffat_psf(
                    sub,
                    x[stars],
                    y[stars],
                    err=err,
                    bad=meas_mask,
                    gain=gain,
                    initial_fwhm=fwhm0,
                )
            except PsfError:
                psf = None
    use_psf = np.zeros(n_src, dtype=bool)
    xerr = np.full(n_src, np.nan)
    yerr = np.full(n_src, np.nan)
    if psf is not None:
        fit_width = None if width_fit_snr is None else snr >= width_fit_snr
        phot = psf_photometry(
            sub, x, y, psf, err=err, bad=meas_mask, gain=gain, fit_width=fit_width
        )
        use_psf = phot.converged & (np.hypot(phot.x - x, phot.y - y) < 1.0)
        x = np.where(use_psf, phot.x, x)
        y = np.where(use_psf, phot.y, y)
        xerr = np.where(use_psf, phot.xerr, xerr)
        yerr = np.where(use_psf, phot.yerr, yerr)
        flux_psf = np.where(phot.converged, phot.flux, np.nan)
        psf_alpha = phot.alpha
        ferr_psf = np.where(phot.converged, phot.flux_err, np.nan)
        sm, sme = spread_model(sub, x, y, psf, err=err, bad=meas_mask, gain=gain)

    # Windowed-centroid errors (SExtractor ERRX2WIN) where the windowed centroid is kept.
    win = ~use_psf
    if win.any():
        half = int(min(15, max(3, math.ceil(4.0 * float(np.percentile(sig[win], 99))))))
        xe, ye = _winpos_errors(sub, err, meas_mask, x[win], y[win], sig[win], gain, half)
        iso_x = np.sqrt(np.maximum(objs["errx2"][win], 0))
        iso_y = np.sqrt(np.maximum(objs["erry2"][win], 0))
        xerr[win] = np.where(np.isfinite(xe) & ~bad_win[win], xe, iso_x)
        yerr[win] = np.where(np.isfinite(ye) & ~bad_win[win], ye, iso_y)

    # Fixed circular aperture at the final position.
    flux_aper, ferr_aper, aflag = sep.sum_circle(
        sub, x, y, r_ap, err=err_sum, gain=sum_gain, mask=meas_mask, subpix=5
    )
    flags |= aflag.astype(np.int32)

    # Mask bits inside the fixed aperture (and saturation by peak value).
    mask_flags = _aperture_mask_bits(m, x, y, r_ap, saturation, peak + bkg_at)
    flags = flags.astype(np.int64) | (mask_flags << MASK_FLAG_SHIFT)

    # PSF-model mismatch floor, measured on this CCD's bright isolated stars and added to the
    # PSF-fit flux errors.
    psf_floor = math.nan
    class_star = _class_star(sm, sme)
    if psf is not None and floor_min_snr is not None:
        psf_floor, n_floor = psf_flux_floor(
            flux_psf,
            ferr_psf,
            flux_aper,
            ferr_aper,
            x,
            y,
            # point sources by both measures: spread_model and the stellar size locus (on
            # narrow-band CCDs compact galaxies pass the class_star cut alone; their aperture
            # flux exceeds the PSF flux by up to 50 % and set floors of 5-12 %)
            (snr >= floor_min_snr)
            & (flags == 0)
            & (class_star > 0.8)
            & select_psf_stars(
                pre, size_column="flux_radius", min_snr=floor_min_snr, locus="smallest"
            ),
            isolation=max(4.0 * psf.fwhm, r_ap + 2.0),
            # Moffat light within r_ap: 1 - (1 + r^2 / alpha^2)^(1 - beta)
            enclosed=1.0 - (1.0 + r_ap**2 / psf_alpha**2) ** (1.0 - psf.beta),
        )
        if np.isfinite(psf_floor):
            ferr_psf = np.hypot(ferr_psf, psf_floor * flux_psf)

    # FWHM per source: the half-light radius scaled by the PSF model's FWHM / half-light
    # radius ratio (measured the same way on the model), or Gaussian-equivalent without a model.
    if psf is not None:
        rmax_model = float(np.median(rmax[stars]))
        fwhm = flux_radius * (psf.fwhm / _model_flux_radius(psf, rmax_model))
    else:
        sigma_g2 = (flux_radius / _GAUSS_RHALF) ** 2 - 1.0 / 12.0
        fwhm = _GAUSS_FWHM * np.sqrt(np.where(sigma_g2 > 0, sigma_g2, np.nan))

    cat = Table()
    cat["x"] = x
    cat["y"] = y
    cat["xerr"] = xerr
    cat["yerr"] = yerr
    cat["x_win"] = xwin_col
    cat["y_win"] = ywin_col
    cat["x_iso"] = x0
    cat["y_iso"] = y0
    cat["flux_auto"] = flux_auto
    cat["flux_err_auto"] = ferr_auto
    cat["flux_aper"] = flux_aper
    cat["flux_err_aper"] = ferr_aper
    cat["flux_psf"] = flux_psf
    cat["flux_err_psf"] = ferr_psf
    cat["kron_radius"] = kronrad
    cat["flux_radius"] = flux_radius
    cat["a"] = a
    cat["b"] = b
    cat["theta"] = theta
    cat["elongation"] = elongation
    cat["fwhm"] = fwhm
    cat["spread_model"] = sm
    cat["spreaderr_model"] = sme
    cat["class_star"] = class_star
    cat["snr"] = snr
    cat["background"] = bkg_at
    cat["peak"] = peak
    cat["isoarea"] = objs["npix"].astype(np.int32)
    cat["flags"] = flags.astype(np.int32)
    cat["mask_flags"] = mask_flags.astype(np.int32)
    cat.meta["aperture_radius_pix"] = r_ap
    cat.meta["threshold_sigma"] = float(threshold)
    if psf is not None:
        cat.meta["psf_alpha_pix"] = psf.alpha
        cat.meta["psf_beta"] = psf.beta
        cat.meta["psf_fwhm_pix"] = psf.fwhm
        cat.meta["psf_nstars"] = psf.n_stars
        cat.meta["psf_flux_floor"] = psf_floor
    return cat


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


def _aperture_mask_bits(
    m: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    saturation: float | None,
    peak_level: np.ndarray,
) -> np.ndarray:
    """OR of the mask bits within ``radius`` of each source (+ SATURATED by peak level)."""
    bits = np.zeros(len(x), dtype=np.int64)
    if m is not None and len(x):
        hm = int(math.ceil(radius))
        mvals, mvalid, mdx, mdy = pixel_stamps(m, x, y, hm, fill=0)
        inside = (mdx**2 + mdy**2 <= radius**2) & mvalid
        bits = np.bitwise_or.reduce(
            np.where(inside, mvals.astype(np.int64), 0).reshape(len(x), -1), axis=1
        )
    if saturation is not None:
        bits |= np.where(peak_level >= saturation, _SATURATED, 0)
    return bits


def _model_flux_radius(psf: MoffatPsf, rmax: float) -> float:
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


def _class_star(sm: np.ndarray, sme: np.ndarray) -> np.ndarray:
    """Stellarity in [0, 1] from SPREAD_MODEL: 1 for point sources, 0 for resolved ones.

    ``1 - clip((spread_model + 5/3 spreaderr_model) / 0.005, 0, 1)``: the DES "modest"
    star/galaxy cut (Drlica-Wagner et al. 2018) sets galaxies at ``> 0.005``; NaN without a PSF.
    """
    with np.errstate(invalid="ignore"):
        v = (sm + (5.0 / 3.0) * sme) / 0.005
    return np.where(np.isfinite(v), 1.0 - np.clip(v, 0.0, 1.0), np.nan)


def _sep_extract(sub: np.ndarray, threshold: float, **kwargs) -> np.ndarray:
    """sep.extract with a pixel stack and a deblending sub-object limit grown on demand (large
    ones cost time and memory per call); a detection that still overflows the deblender at
    the largest limit is retried with half the deblending thresholds, then without
    deblending, rather than failing the CCD."""
    stack = 300_000
    limit = _SUB_OBJECT_LIMITS[0]
    while True:
        sep.set_extract_pixstack(stack)
        sep.set_sub_object_limit(limit)
        try:
            # filter_type="conv": the threshold is in units of the unfiltered per-pixel noise,
            # applied to the filtered image, as SExtractor's DETECT_THRESH.
            return sep.extract(sub, threshold, clean=True, filter_type="conv", **kwargs)
        except Exception as exc:
            msg = str(exc).lower()
            if ("pixel buffer full" in msg or "pixstack" in msg) and stack < sub.size:
                stack = min(sub.size, stack * 4)
                continue
            if "deblending overflow" in msg:
                if limit < _SUB_OBJECT_LIMITS[-1]:
                    limit = next(v for v in _SUB_OBJECT_LIMITS if v > limit)
                    continue
                nthresh = int(kwargs.get("deblend_nthresh", 32))
                if nthresh > 1:
                    kwargs["deblend_nthresh"] = max(1, nthresh // 2) if nthresh > 8 else 1
                    continue
            raise ExtractionError(f"source extraction failed: {exc}") from exc
        finally:
            sep.set_sub_object_limit(_SUB_OBJECT_LIMITS[0])


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
