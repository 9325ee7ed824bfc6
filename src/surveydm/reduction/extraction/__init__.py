"""Background estimation and source extraction on detrended CCD images (sep).

The image is a detrended (ny, nx) float32 array in electrons, with a uint16 bit mask
(``reduction.masks.MaskBit`` codes) and a float32 weight map (inverse variance of the sky + read
noise, electrons^-2). The measurements follow SExtractor (Bertin & Arnouts 1996) as implemented
by sep (Barbary 2016): isophotal detection on the background-subtracted image, Kron (AUTO)
fluxes, fixed circular aperture fluxes, windowed centroids (XWIN/YWIN) and half-light radii.
Kron radii and fluxes, half-light radii and windowed centroids leave each object's neighbours
out through the detection's segmentation map, as SExtractor does (:mod:`.segmented`).

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
  ``sep.APER_HASMASKED`` = 32 (a masked pixel, not a neighbour's, in the Kron or fixed
  aperture), ``sep.APER_ALLMASKED`` = 64, ``sep.APER_NONPOSITIVE`` = 128);
* bits 8 and up: the OR of the mask bits (``MaskBit``) of the pixels inside the fixed aperture,
  shifted left by :data:`MASK_FLAG_SHIFT` (also given unshifted in the ``mask_flags`` column).

So ``flags == 0`` means a clean, isolated, unmasked detection.

The package, one concept per module, in the order of the steps: :mod:`.image` (validated
pixels, noise maps, masks), :mod:`.background`, :mod:`.config` (:class:`ExtractionConfig`),
:mod:`.detection`, :mod:`.kron`, :mod:`.centroids` (both through :mod:`.segmented`),
:mod:`.psf_steps` (PSF model, PSF photometry, flux floor, FWHM), :mod:`.aperture`,
:mod:`.catalog`, and :mod:`.extract` (:func:`extract_sources`, the steps in order).
"""

from surveydm.reduction.extraction.aperture import MASK_FLAG_SHIFT
from surveydm.reduction.extraction.background import (
    Background,
    level_background,
    measure_background,
)
from surveydm.reduction.extraction.catalog import CATALOG_COLUMNS
from surveydm.reduction.extraction.config import DEFAULT_DETECTION_IGNORED_BITS, ExtractionConfig
from surveydm.reduction.extraction.extract import extract_sources
from surveydm.reduction.extraction.image import ExtractionError
from surveydm.reduction.extraction.psf_steps import psf_flux_floor
from surveydm.reduction.stamps import pixel_stamps

__all__ = [
    "CATALOG_COLUMNS",
    "DEFAULT_DETECTION_IGNORED_BITS",
    "MASK_FLAG_SHIFT",
    "Background",
    "ExtractionConfig",
    "ExtractionError",
    "extract_sources",
    "level_background",
    "measure_background",
    "pixel_stamps",
    "psf_flux_floor",
]
