"""Single-epoch reduction of one CCD (seed 000 section 6.1; seed 002 daily pipeline; IPP chip
stage, seed 004 section 3.3): raw amplifiers -> calibrated image, weight, mask, WCS, catalog
and quality figures. Pure computation on arrays and tables: the nightly task reads the inputs
from the archive and registry and records what this returns.

Order: overscan per amplifier, trim, crosstalk, non-linearity, gain, bias, dark, flat (one pass
over the pixels, ``assemble_ccd``); fringe (``detrend``); cosmic rays (astroscrappy); masks and
weight map; background (sep's mesh, levelled to the mean of the source-free pixels) and source
extraction (sep); PSF FWHM; astrometric calibration from the header pointing guess to TAN-SIP
against the reference catalog; photometric zero-point and transparency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from surveydm.instruments import CCD, Filter
from surveydm.reduction.assemble import assemble_ccd
from surveydm.reduction.astrometry import AstrometryConfig, solve_astrometry
from surveydm.reduction.cosmics import find_cosmic_rays
from surveydm.reduction.detrend import detrend
from surveydm.reduction.extraction import (
    Background,
    ExtractionConfig,
    extract_sources,
    level_background,
    measure_background,
)
from surveydm.reduction.masks import MaskBit, bad_pixels_from_flat, build_mask
from surveydm.reduction.photometry import (
    PhotometryError,
    aperture_correction,
    fit_zeropoint,
    transparency,
)
from surveydm.reduction.psf import estimate_psf_fwhm, select_psf_stars
from surveydm.reduction.weights import weight_map


@dataclass(frozen=True)
class SingleEpochConfig:
    """Parameters of the single-epoch reduction (part of the nightly production config)."""

    cosmic_rays: bool = True
    edge_width: int = 4
    detect_threshold: float = 1.5
    aperture_radius_arcsec: float = 3.0
    sip_degree: int = 3
    max_offset_arcsec: float = 90.0
    max_rotation_deg: float = 1.5
    zp_mag_bright: float = 16.0
    zp_mag_faint: float = 20.5


@dataclass
class CCDReduction:
    """Everything one CCD's single-epoch reduction produces.

    Attributes:
        science: (ny, nx) float32 calibrated image, electrons (background not subtracted).
        weight: (ny, nx) float32 inverse variance, e-^-2 (0 where masked).
        mask: (ny, nx) uint16 :class:`~surveydm.reduction.masks.MaskBit` codes.
        wcs: the fitted TAN-SIP WCS (the initial guess when astrometry failed).
        catalog: detections with ``ra, dec`` (deg) and calibrated ``mag, mag_err`` (AB) when a
            zero-point was measured.
        metrics: figures recorded in the registry and checked by QC.
    """

    science: np.ndarray
    weight: np.ndarray
    mask: np.ndarray
    wcs: WCS
    catalog: Table
    metrics: dict[str, Any] = field(default_factory=dict)


def reduce_ccd(
    raw_amps: dict[int, np.ndarray],
    ccd: CCD,
    band: Filter,
    *,
    exptime: float,
    airmass: float,
    pixel_scale: float,
    initial_wcs: WCS,
    reference: Table,
    bias: np.ndarray | None,
    flat: np.ndarray | None,
    fringe: np.ndarray | None = None,
    config: SingleEpochConfig = SingleEpochConfig(),
) -> CCDReduction:
    """Reduce one CCD of a science exposure.

    Args:
        raw_amps: amplifier number -> raw extension array (ADU), as in the raw mosaic.
        ccd: the CCD's description; band: the filter covering it.
        exptime: s; airmass: at the exposure; pixel_scale: arcsec/pixel.
        initial_wcs: TAN WCS from the telescope pointing in the header (errors up to ~1 arcmin,
            rotation up to ~1 deg).
        reference: reference stars ``ra, dec`` (deg), ``mag``, ``mag_error`` (AB, this band).
        bias: master bias of this CCD (e-), or None; flat: master flat normalised to 1, or None.
        fringe: master fringe frame of this CCD and filter (zero-mean, sky units), or None; its
            amplitude is fitted by least squares (bands with ``fringing``).

    Raises:
        surveydm.reduction.overscan.RawGeometryError: raw arrays do not match the description.
    """
    assembled = assemble_ccd(
        raw_amps,
        ccd,
        bias=bias,
        dark=ccd.dark_current or None,  # uniform dark current (e-/s)
        exptime=exptime,
        flat=flat,
    )
    read_noise = assembled.read_noise_map()
    science = detrend(assembled.image, fringe=fringe, overwrite=True)
    shape = science.shape
    bad = bad_pixels_from_flat(flat) if flat is not None else None
    no_data = ~(flat > 0) if flat is not None else None
    sat_e = assembled.saturation_level
    base_mask = build_mask(
        shape,
        bad_pixels=bad,
        saturated=assembled.saturated,
        no_data=no_data,
        edge_width=config.edge_width,
        image=science,
    )
    background = measure_background(science, mask=base_mask)
    cr_mask = None
    if config.cosmic_rays:
        # A first, bright-source pass measures the PSF, so that astroscrappy's fine-structure
        # model matches it and undersampled star cores are not taken for cosmic rays.
        bright = extract_sources(
            science,
            background=background,
            mask=base_mask,
            pixel_scale=pixel_scale,
            saturation=sat_e,
            config=ExtractionConfig(threshold=10.0, psf_model=True),
        )
        psf0 = estimate_psf_fwhm(bright, pixel_scale=pixel_scale)
        cr_mask, science = find_cosmic_rays(
            science,
            read_noise=assembled.read_noise,
            saturation_level=sat_e,
            mask=base_mask,
            psf_fwhm=psf0.fwhm_pixels if np.isfinite(psf0.fwhm_pixels) else None,
        )
    mask = base_mask | build_mask(shape, cosmic_rays=cr_mask)
    background, bkg_offset = level_background(science, background, mask)
    # Weight of the background (sky + read noise), as SExtractor/SWarp weight maps are: the
    # extraction adds the sources' own Poisson noise (weight_kind="background").
    weight = weight_map(background.image, flat, read_noise, mask)
    catalog = extract_sources(
        science,
        background=background,
        mask=mask,
        weight=weight,
        weight_kind="background",
        pixel_scale=pixel_scale,
        saturation=sat_e,
        config=ExtractionConfig(
            threshold=config.detect_threshold,
            aperture_radius_arcsec=config.aperture_radius_arcsec,
        ),
    )
    psf = estimate_psf_fwhm(catalog, pixel_scale=pixel_scale)
    astro = solve_astrometry(
        catalog,
        reference,
        initial_wcs,
        image_shape=shape,
        config=AstrometryConfig(
            max_offset_arcsec=config.max_offset_arcsec,
            max_rotation_deg=config.max_rotation_deg,
            sip_degree=config.sip_degree,
        ),
    )
    wcs = astro.wcs
    if len(catalog):
        ra, dec = wcs.all_pix2world(catalog["x"], catalog["y"], 0)
    else:
        ra, dec = np.zeros(0), np.zeros(0)
    catalog["ra"] = np.asarray(ra, float)
    catalog["dec"] = np.asarray(dec, float)

    apcor = _aperture_correction(science, background, mask, catalog, psf.fwhm_pixels)
    zp = _zeropoint(astro, catalog, reference, exptime, config, apcor) if astro.ok else None
    metrics: dict[str, Any] = {
        "psf_fwhm": _finite(psf.fwhm_arcsec),
        "psf_stars": psf.n_stars,
        "bkg_mean": background.global_level / exptime if exptime > 0 else None,
        "bkg_std": background.global_rms,
        "bkg_offset": bkg_offset,
        "n_extracted": len(catalog),
        "astro_status": astro.status,
        "astro_rms": _finite(astro.rms_arcsec),
        "astro_nstars": astro.n_matches,
        "astro_message": astro.message,
        "cosmic_ratio": float(cr_mask.mean()) if cr_mask is not None else 0.0,
        "saturate_ratio": float(assembled.saturated.mean()),
        "overscan": assembled.overscan_levels,
        "read_noise": assembled.read_noise,
        "masked_fraction": float((mask != 0).mean()),
    }
    if zp is not None and np.isfinite(zp.zp):
        metrics.update(zp=zp.zp, zp_err=zp.zp_err, zp_stars=zp.n_stars, aperture_correction=apcor)
        metrics["transparency"] = transparency(zp.zp, band.zeropoint, band.extinction, airmass)
        flux, ferr = _best_flux(catalog)
        with np.errstate(divide="ignore", invalid="ignore"):
            catalog["mag"] = np.where(flux > 0, zp.zp - 2.5 * np.log10(flux / exptime), np.nan)
            catalog["mag_err"] = np.where(flux > 0, 1.0857 * ferr / flux, np.nan)
        metrics["photo_status"] = "ok"
    else:
        metrics["photo_status"] = "no_calibration"
    return CCDReduction(science, weight, mask, wcs, catalog, metrics)


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _best_flux(catalog: Table) -> tuple[np.ndarray, np.ndarray]:
    """Total flux and error per source: the PSF-fit flux where it converged (point sources),
    else the Kron (auto) flux."""
    auto = np.asarray(catalog["flux_auto"], float)
    auto_err = np.asarray(catalog["flux_err_auto"], float)
    if "flux_psf" not in catalog.colnames:
        return auto, auto_err
    psf = np.asarray(catalog["flux_psf"], float)
    psf_err = np.asarray(catalog["flux_err_psf"], float)
    use = np.isfinite(psf) & np.isfinite(psf_err)
    return np.where(use, psf, auto), np.where(use, psf_err, auto_err)


def _aperture_correction(
    science: np.ndarray, background: Background, mask: np.ndarray, catalog: Table, fwhm: float
) -> float | None:
    """Aperture correction factor of ``flux_aper`` (total / aperture flux) from the curve of
    growth of the PSF stars without a neighbour within the total radius + 2 pixels, out to
    4 FWHM, or the aperture radius + 2 pixels when the seeing is so good that the aperture
    already holds 4 FWHM (inverse-variance weighted, so the brightest stars dominate); None
    without usable stars."""
    r_ap = float(catalog.meta.get("aperture_radius_pix", 0.0)) if len(catalog) else 0.0
    if not (np.isfinite(fwhm) and r_ap > 0):
        return None
    total = max(4.0 * fwhm, r_ap + 2.0)
    stars = np.flatnonzero(select_psf_stars(catalog))
    if len(stars) < 3:
        return None
    xy = np.column_stack([np.asarray(catalog["x"], float), np.asarray(catalog["y"], float)])
    nn, _ = cKDTree(xy).query(xy[stars], k=2)
    stars = stars[nn[:, 1] > total + 2.0]
    if len(stars) < 3:
        return None
    try:
        ac = aperture_correction(
            science,
            xy[stars, 0],
            xy[stars, 1],
            radius=r_ap,
            total_radius=total,
            background=background.image,
            mask=mask,
            err=background.rms,
            gain=1.0,
        )
    except PhotometryError:
        return None
    return ac.factor if ac.n_stars >= 3 and np.isfinite(ac.factor) else None


def _zeropoint(astro, catalog: Table, reference: Table, exptime: float, config, apcor=None):  # noqa: ANN001, ANN202
    """Zero-point (AB mag for 1 e-/s) from the astrometric matches: unflagged point sources
    against reference magnitudes in the configured window, with aperture fluxes times the
    aperture correction ``apcor`` (total fluxes independent of the PSF model), or the PSF-fit
    fluxes without one."""
    matches = astro.matches
    if not len(matches):
        return None
    si = np.asarray(matches["source_index"], int)
    ri = np.asarray(matches["reference_index"], int)
    if apcor is not None:
        flux = np.asarray(catalog["flux_aper"], float) * apcor
        ferr = np.asarray(catalog["flux_err_aper"], float) * apcor
    else:
        flux, ferr = _best_flux(catalog)
    flux, ferr = flux[si], ferr[si]
    bad = int(MaskBit.SATURATED | MaskBit.BLEED | MaskBit.COSMIC_RAY | MaskBit.BAD_PIXEL)
    ok = (np.asarray(catalog["mask_flags"])[si] & bad) == 0
    ok &= np.isfinite(flux) & (flux > 0)
    ref_err = np.asarray(reference["mag_error"], float)[ri]
    return fit_zeropoint(
        flux[ok],
        np.asarray(reference["mag"], float)[ri][ok],
        np.where(np.isfinite(ref_err), ref_err, 0.02)[ok],
        exptime=exptime,
        instrumental_err=ferr[ok],
        mag_range=(config.zp_mag_bright, config.zp_mag_faint),
    )
