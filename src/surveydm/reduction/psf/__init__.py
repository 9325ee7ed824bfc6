"""Seeing (PSF FWHM), PSF-star selection, a Moffat PSF model, PSF photometry, SPREAD_MODEL.

The stars are the "stellar locus" of bright, unsaturated, unflagged, round sources: in a
size-magnitude diagram point sources share the smallest size, galaxies are larger and cosmic
rays / hot pixels smaller. The locus is found as the densest size bin among the bright clean
sources and refined by sigma clipping, in the spirit of PSFEx's star selection (Bertin 2011)
and the PAUdm "psf fwhm" image column (seed 000 table B.1).

The PSF model is a pixel-integrated Moffat profile (alpha, beta) fitted jointly to the PSF stars
of a CCD (IPP's psphot uses the same family; Magnier et al. 2016), by variable projection
(Golub & Pereyra 1973) with analytic derivatives; pixel integration is Gauss-Legendre
quadrature (:mod:`.kernels`, compiled). With it every source gets a PSF fit (flux, x, y by
Gauss-Newton on stamps, compiled): for undersampled images (FWHM ~ 1 pixel, the
mini cameras at 0.8 arcsec/pixel) PSF-fit positions are free of the pixel-phase bias of
windowed centroids (0.03-0.1 pixel at FWHM 1.3-0.9 pixel) that would spoil the astrometry.
SPREAD_MODEL (Desai et al. 2012, ApJ 757, 83; Bertin's SExtractor) compares the fit of the PSF
with that of the PSF convolved with an exponential disc of scale FWHM/16: ~0 for point sources,
> 0 for resolved galaxies.

The package: :mod:`.stars` (stellar locus, seeing), :mod:`.model` (the Moffat PSF),
:mod:`.fit` (fitting it to a CCD's stars), :mod:`.photometry` (PSF fits of every source and
SPREAD_MODEL), :mod:`.kernels` (the compiled profile and fits).
"""

from surveydm.reduction.psf.fit import fit_moffat_psf
from surveydm.reduction.psf.model import MoffatPsf, PsfError
from surveydm.reduction.psf.photometry import PsfPhotometry, psf_photometry, spread_model
from surveydm.reduction.psf.stars import PsfEstimate, estimate_psf_fwhm, select_psf_stars

__all__ = [
    "MoffatPsf",
    "PsfError",
    "PsfEstimate",
    "PsfPhotometry",
    "estimate_psf_fwhm",
    "fit_moffat_psf",
    "psf_photometry",
    "select_psf_stars",
    "spread_model",
]
