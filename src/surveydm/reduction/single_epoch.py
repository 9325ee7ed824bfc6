"""Single-epoch reduction of one CCD (seed 000 section 6.1; seed 002 daily pipeline; IPP chip
stage, seed 004 section 3.3): raw amplifiers -> calibrated image, weight, mask, WCS, catalog
and quality figures. Pure computation on arrays and tables: the nightly task
(:mod:`surveydm.pipelines.nightly.single_epoch_ccd`) reads the inputs from the archive and
registry and records what this returns.

Order: overscan per amplifier, trim, crosstalk, non-linearity, gain, bias, dark, flat (one pass
over the pixels, ``assemble_ccd``); fringe (``detrend``); masks (the night's bad-pixel mask,
flat outliers, saturation and bleed trails); satellite trails
(:mod:`surveydm.reduction.satellites`); cosmic rays (pixels sharper than the PSF,
:mod:`surveydm.reduction.cosmics`); weight map; background (sep's mesh, levelled to the mean
of the source-free pixels) and source extraction (sep); PSF FWHM; astrometric calibration
from the header pointing guess to TAN-SIP against the reference catalog; photometric
zero-point and transparency
(:mod:`surveydm.reduction.zeropoint`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from surveydm.instruments import CCD, Filter
from surveydm.reduction.assemble import AssembledCCD, assemble_ccd
from surveydm.reduction.astrometry import AstrometryConfig, AstrometrySolution, solve_astrometry
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
from surveydm.reduction.photometry import transparency
from surveydm.reduction.psf import estimate_psf_fwhm
from surveydm.reduction.satellites import find_satellite_trails
from surveydm.reduction.weights import weight_map
from surveydm.reduction.zeropoint import (
    add_calibrated_magnitudes,
    isolated_star_aperture_correction,
    matched_zeropoint,
)

#: ``photo_status`` of a CCD with / without a zero-point.
PHOTO_OK = "ok"
PHOTO_NO_CALIBRATION = "no_calibration"
#: Detection threshold (sigma) of the bright-source pass that measures the PSF for astroscrappy.
BRIGHT_PASS_THRESHOLD = 10.0


@dataclass(frozen=True)
class SingleEpochConfig:
    """Parameters of the single-epoch reduction (part of the nightly production config).

    Attributes:
        cosmic_rays: find and clean cosmic rays; satellite_trails: find and mask satellite
            trails (:mod:`surveydm.reduction.satellites`).
        edge_width: pixels masked along the CCD edges.
        detect_threshold: detection threshold, sigma of the background.
        aperture_radius_arcsec: radius of ``flux_aper``; sip_degree: SIP polynomial degree.
        max_offset_arcsec, max_rotation_deg: largest pointing error the matcher searches.
        zp_mag_bright, zp_mag_faint: reference magnitude window of the zero-point fit (AB).
    """

    cosmic_rays: bool = True
    satellite_trails: bool = True
    edge_width: int = 4
    detect_threshold: float = 1.5
    aperture_radius_arcsec: float = 3.0
    sip_degree: int = 3
    max_offset_arcsec: float = 90.0
    max_rotation_deg: float = 1.5
    zp_mag_bright: float = 16.0
    zp_mag_faint: float = 20.5

    @classmethod
    def from_mapping(cls, values: dict[str, object] | None) -> SingleEpochConfig:
        """The configuration from a JSON mapping; unknown keys are ignored (a production's
        configuration may carry keys of other versions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


@dataclass(frozen=True)
class CCDMetrics:
    """Figures of one reduced CCD, recorded in the registry and checked by QC.

    Attributes:
        psf_fwhm: median PSF FWHM of bright unsaturated stars, arcsec (None if not measured);
            psf_stars: stars used.
        bkg_mean: global background level per second, e-/s/pixel (None for exptime 0);
            bkg_std: its rms, e-/pixel; bkg_offset: levelling offset of the mesh, e-/pixel.
        n_extracted: sources in the catalog.
        astro_status: ``ok``, ``too_few_stars`` or ``no_match``; astro_rms: arcsec;
            astro_nstars: matched reference stars; astro_message: why it failed, if it did.
        cosmic_ratio, saturate_ratio, masked_fraction: fractions of the CCD's pixels.
        overscan: amplifier -> overscan level, ADU; read_noise: amplifier -> read noise, e-.
        zp: AB mag for 1 e-/s, zp_err: mag, zp_stars: stars used, aperture_correction:
            factor of ``flux_aper``, transparency: measured / nominal flux (all None without a
            zero-point); photo_status: ``ok`` or ``no_calibration``.
    """

    psf_fwhm: float | None
    psf_stars: int
    bkg_mean: float | None
    bkg_std: float
    bkg_offset: float
    n_extracted: int
    astro_status: str
    astro_rms: float | None
    astro_nstars: int
    astro_message: str
    cosmic_ratio: float
    saturate_ratio: float
    masked_fraction: float
    overscan: dict[int, float]
    read_noise: dict[int, float]
    zp: float | None = None
    zp_err: float | None = None
    zp_stars: int | None = None
    aperture_correction: float | None = None
    transparency: float | None = None
    photo_status: str = PHOTO_NO_CALIBRATION

    def scalars(self) -> dict[str, float | int | str | None]:
        """The scalar figures as a JSON-able dict (the CCD job's output)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not isinstance(getattr(self, f.name), dict)
        }


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
    metrics: CCDMetrics


@dataclass
class _Cleaned:
    """The detrended CCD after cosmic-ray cleaning, with its mask, background and weight."""

    science: np.ndarray
    mask: np.ndarray
    background: Background
    bkg_offset: float
    weight: np.ndarray
    cosmic_rays: np.ndarray | None


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
    bad_pixel_mask: np.ndarray | None = None,
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
        bad_pixel_mask: (ny, nx) ``MaskBit`` codes of the CCD's bad-pixel mask (hot, dead,
            unstable pixels and columns; :func:`surveydm.reduction.bad_pixel_mask.bad_pixel_mask`),
            or None; OR-ed into the image's mask.

    Raises:
        surveydm.reduction.overscan.RawGeometryError: raw arrays do not match the description.
        ValueError: ``bad_pixel_mask`` does not have the CCD's shape.
    """
    assembled = assemble_ccd(
        raw_amps,
        ccd,
        bias=bias,
        dark=ccd.dark_current or None,  # uniform dark current (e-/s)
        exptime=exptime,
        flat=flat,
    )
    science = detrend(assembled.image, fringe=fringe, overwrite=True)
    clean = _clean(science, assembled, flat, bad_pixel_mask, pixel_scale, config)
    sat_e = assembled.saturation_level
    catalog = extract_sources(
        clean.science,
        background=clean.background,
        mask=clean.mask,
        weight=clean.weight,
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
        image_shape=clean.science.shape,
        config=AstrometryConfig(
            max_offset_arcsec=config.max_offset_arcsec,
            max_rotation_deg=config.max_rotation_deg,
            sip_degree=config.sip_degree,
        ),
    )
    _add_sky_positions(catalog, astro.wcs)
    metrics = CCDMetrics(
        psf_fwhm=_finite(psf.fwhm_arcsec),
        psf_stars=psf.n_stars,
        bkg_mean=clean.background.global_level / exptime if exptime > 0 else None,
        bkg_std=clean.background.global_rms,
        bkg_offset=clean.bkg_offset,
        n_extracted=len(catalog),
        astro_status=astro.status,
        astro_rms=_finite(astro.rms_arcsec),
        astro_nstars=astro.n_matches,
        astro_message=astro.message,
        cosmic_ratio=float(clean.cosmic_rays.mean()) if clean.cosmic_rays is not None else 0.0,
        saturate_ratio=float(assembled.saturated.mean()),
        masked_fraction=float((clean.mask != 0).mean()),
        overscan=assembled.overscan_levels,
        read_noise=assembled.read_noise,
    )
    apcor = isolated_star_aperture_correction(
        clean.science, clean.background, clean.mask, catalog, psf.fwhm_pixels
    )
    metrics = _calibrate_photometry(
        metrics, astro, catalog, reference, band, exptime, airmass, config, apcor
    )
    return CCDReduction(clean.science, clean.weight, clean.mask, astro.wcs, catalog, metrics)


def _clean(
    science: np.ndarray,
    assembled: AssembledCCD,
    flat: np.ndarray | None,
    bad_pixel_mask: np.ndarray | None,
    pixel_scale: float,
    config: SingleEpochConfig,
) -> _Cleaned:
    """Masks, cosmic rays, levelled background and weight map of a detrended CCD."""
    shape = science.shape
    sat_e = assembled.saturation_level
    base_mask = build_mask(
        shape,
        bad_pixels=bad_pixels_from_flat(flat) if flat is not None else None,
        saturated=assembled.saturated,
        no_data=~(flat > 0) if flat is not None else None,
        edge_width=config.edge_width,
        image=science,
    )
    if bad_pixel_mask is not None:
        if np.shape(bad_pixel_mask) != shape:
            raise ValueError(f"bad-pixel mask has shape {np.shape(bad_pixel_mask)}, CCD {shape}")
        base_mask |= np.asarray(bad_pixel_mask).astype(base_mask.dtype)
    background = measure_background(science, mask=base_mask)
    trail_mask = None
    if config.satellite_trails:  # before the cosmic rays: their test is not for trails
        trails = find_satellite_trails(science, background.image, background.rms, base_mask)
        if trails.trails:  # the sky under a bright trail was taken for background
            trail_mask = trails.mask
            background = measure_background(science, mask=base_mask | trail_mask)
    cr_mask = None
    if config.cosmic_rays:
        # A first, bright-source pass measures the PSF, so that the cosmic-ray test's bound on
        # a star's sharpness matches it and undersampled star cores are not taken for hits.
        # Its PSF stars are the densest size locus at S/N >= 30 (psf_max_snr=None): the
        # cosmic rays, not masked yet, can form the smallest locus at S/N 30-100.
        bright = extract_sources(
            science,
            background=background,
            mask=base_mask,
            pixel_scale=pixel_scale,
            saturation=sat_e,
            config=ExtractionConfig(
                threshold=BRIGHT_PASS_THRESHOLD, psf_model=True, psf_max_snr=None
            ),
        )
        psf0 = estimate_psf_fwhm(bright, pixel_scale=pixel_scale)
        cr_mask, science = find_cosmic_rays(
            science,
            read_noise=assembled.read_noise,
            saturation_level=sat_e,
            mask=base_mask if trail_mask is None else base_mask | trail_mask,
            sky=background.image,
            psf_fwhm=psf0.fwhm_pixels if np.isfinite(psf0.fwhm_pixels) else None,
        )
    mask = base_mask | build_mask(shape, cosmic_rays=cr_mask)
    if trail_mask is not None:
        mask[trail_mask] |= np.uint16(MaskBit.SATELLITE)
    background, bkg_offset = level_background(science, background, mask)
    # Weight of the background (sky + read noise), as SExtractor/SWarp weight maps are: the
    # extraction adds the sources' own Poisson noise (weight_kind="background").
    weight = weight_map(background.image, flat, assembled.read_noise_map(), mask)
    return _Cleaned(science, mask, background, bkg_offset, weight, cr_mask)


def _add_sky_positions(catalog: Table, wcs: WCS) -> None:
    """``ra, dec`` (deg) of every detection from its ``x, y`` through ``wcs``."""
    if len(catalog):
        ra, dec = wcs.all_pix2world(catalog["x"], catalog["y"], 0)
    else:
        ra, dec = np.zeros(0), np.zeros(0)
    catalog["ra"] = np.asarray(ra, float)
    catalog["dec"] = np.asarray(dec, float)


def _calibrate_photometry(
    metrics: CCDMetrics,
    astro: AstrometrySolution,
    catalog: Table,
    reference: Table,
    band: Filter,
    exptime: float,
    airmass: float,
    config: SingleEpochConfig,
    apcor: float | None,
) -> CCDMetrics:
    """The metrics with the zero-point and transparency, and the catalog with calibrated
    magnitudes, when the astrometry solved and the zero-point fit gave a finite value."""
    if not astro.ok:
        return metrics
    zp = matched_zeropoint(
        astro.matches,
        catalog,
        reference,
        exptime=exptime,
        mag_range=(config.zp_mag_bright, config.zp_mag_faint),
        apcor=apcor,
    )
    if zp is None or not np.isfinite(zp.zp):
        return metrics
    add_calibrated_magnitudes(catalog, zp.zp, exptime)
    return replace(
        metrics,
        zp=zp.zp,
        zp_err=zp.zp_err,
        zp_stars=zp.n_stars,
        aperture_correction=apcor,
        transparency=transparency(zp.zp, band.zeropoint, band.extinction, airmass),
        photo_status=PHOTO_OK,
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
