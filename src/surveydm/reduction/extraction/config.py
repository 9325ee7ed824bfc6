"""The knobs of :func:`~surveydm.reduction.extraction.extract_sources`, in one frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surveydm.reduction.extraction.image import ExtractionError
from surveydm.reduction.masks import MaskBit

__all__ = ["DEFAULT_DETECTION_IGNORED_BITS", "ExtractionConfig"]

#: Mask bits whose pixels are detected as they are: EDGE (real data, which keeps the isophotal
#: barycentres of sources at the border right). Every other masked pixel is interpolated in the
#: detection image (``image.fill_masked_pixels``), so a saturated star is still detected once
#: and its bleed trail does not join the sources along it.
DEFAULT_DETECTION_IGNORED_BITS = int(MaskBit.EDGE)


@dataclass(frozen=True)
class ExtractionConfig:
    """How :func:`~surveydm.reduction.extraction.extract_sources` detects and measures.

    The defaults are SExtractor's (Bertin & Arnouts 1996; ``DETECT_THRESH``, ``DETECT_MINAREA``,
    ``DEBLEND_NTHRESH``, ``DEBLEND_MINCONT``, ``PHOT_AUTOPARAMS``) and surveydm's PSF choices
    (docs/reduction-catalogs.md). What belongs to the image itself (pixel scale, gain,
    saturation level, what the weight map holds) is given to ``extract_sources`` directly.

    Attributes:
        threshold: detection threshold in units of the unfiltered per-pixel background sigma
            (``DETECT_THRESH``), default 1.5.
        minarea: minimum number of connected pixels above the threshold, default 5.
        deblend_nthresh: deblending sub-thresholds (``DEBLEND_NTHRESH``), default 32.
        deblend_cont: minimum flux fraction of a deblended branch (``DEBLEND_MINCONT``),
            default 0.005.
        filter_kernel: detection filter: "default" (sep's 3x3 pyramid), a 2-D float array, or
            None (no filtering).
        detection_ignored_bits: ``MaskBit`` bits whose pixels are detected as they are
            (default EDGE; other masked pixels are interpolated for detection).
        kron_factor: Kron aperture ``k * r_kron`` (``PHOT_AUTOPARAMS`` first value), default 2.5.
        min_kron_radius: smallest Kron aperture, in units of the isophotal a, b (SExtractor
            ``PHOT_AUTOPARAMS`` second value, R_min), default 3.5.
        aperture_radius_arcsec: radius of the fixed circular aperture (``flux_aper``), arcsec,
            default 2.0.
        psf_model: fit a Moffat PSF to the stellar locus (>= 5 stars of S/N >= 30) and PSF-fit
            every source (positions, ``flux_psf``, ``spread_model``), default True.
        max_psf_stars: brightest PSF stars used for the model, default 60.
        psf_max_snr: PSF-model stars come from the stellar locus of S/N 30 to this (None: no
            upper limit); with fewer than 10 there, from all S/N >= 30 stars. Default 100.
        width_fit_snr: sources with S/N >= this also fit the PSF width (Moffat alpha) each
            (``psf_photometry(fit_width=...)``); None disables. Default 100.
        floor_min_snr: S/N of the bright isolated point sources on which the PSF-model
            mismatch floor of ``flux_err_psf`` is measured (``psf_flux_floor``); None disables
            the floor. Default 50. (Without it, compare_sextractor's bright-star pulls are
            nearer 1 on single CCDs, but the nightly accuracy pull of paucam-mini rises from
            ~1.05 to 1.12: per-CCD flux-scale offsets of the nightly reduction are then
            uncovered.)
        beta_stars: the Moffat beta of the PSF model is fitted on this many of the brightest
            unsaturated stars of the stellar locus (with at least 10 of them; the model's
            alpha then comes from its S/N window with beta fixed); None or 0 fits beta with
            the model's stars. Default 100.

    Raises:
        ExtractionError: a value out of its range (the message names the field).
    """

    threshold: float = 1.5
    minarea: int = 5
    deblend_nthresh: int = 32
    deblend_cont: float = 0.005
    filter_kernel: np.ndarray | str | None = "default"
    detection_ignored_bits: int = DEFAULT_DETECTION_IGNORED_BITS
    kron_factor: float = 2.5
    min_kron_radius: float = 3.5
    aperture_radius_arcsec: float = 2.0
    psf_model: bool = True
    max_psf_stars: int = 60
    psf_max_snr: float | None = 100.0
    width_fit_snr: float | None = 100.0
    floor_min_snr: float | None = 50.0
    beta_stars: int | None = 100

    def __post_init__(self) -> None:
        if not (self.threshold > 0 and math.isfinite(self.threshold)):
            raise ExtractionError(
                f"threshold must be a positive number of sigma, got {self.threshold}"
            )
        if self.minarea < 1:
            raise ExtractionError(f"minarea must be >= 1 pixel, got {self.minarea}")
        if self.deblend_nthresh < 1 or not (0.0 <= self.deblend_cont <= 1.0):
            raise ExtractionError(
                f"deblend_nthresh must be >= 1 and deblend_cont in [0, 1] "
                f"(got {self.deblend_nthresh}, {self.deblend_cont})"
            )
        if isinstance(self.filter_kernel, str) and self.filter_kernel != "default":
            raise ExtractionError(
                f"unknown filter_kernel {self.filter_kernel!r}: use 'default', an array or None"
            )
        if not (self.aperture_radius_arcsec > 0):
            raise ExtractionError("aperture_radius_arcsec must be positive")
        if not (self.kron_factor > 0):
            raise ExtractionError(f"kron_factor must be positive, got {self.kron_factor}")
