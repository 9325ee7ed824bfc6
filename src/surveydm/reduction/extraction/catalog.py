"""Last step of source extraction: the output catalog (one row per source, the columns of
:data:`CATALOG_COLUMNS`, SExtractor names in lower case where one exists)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from surveydm.reduction.extraction.aperture import ApertureFlux
from surveydm.reduction.extraction.centroids import WindowedCentroids
from surveydm.reduction.extraction.detection import Detections
from surveydm.reduction.extraction.kron import KronPhotometry
from surveydm.reduction.extraction.psf_steps import PsfFit, PsfModelFit

__all__ = ["CATALOG_COLUMNS", "SourceMeasurements", "empty_catalog"]

#: Output columns of ``extract_sources``, in order (integer columns in ``_INT_COLUMNS``).
CATALOG_COLUMNS = (
    "x", "y", "xerr", "yerr", "x_win", "y_win", "x_iso", "y_iso",
    "flux_auto", "flux_err_auto", "flux_aper", "flux_err_aper", "flux_psf", "flux_err_psf",
    "kron_radius", "flux_radius", "a", "b", "theta", "elongation", "fwhm",
    "spread_model", "spreaderr_model", "class_star", "snr", "background", "peak",
    "isoarea", "flags", "mask_flags",
)  # fmt: skip
_INT_COLUMNS = ("isoarea", "flags", "mask_flags")


def empty_catalog(aperture_radius_pix: float) -> Table:
    """The catalog of an image without detections (every column, no row)."""
    cat = Table(
        {
            n: np.zeros(0, dtype=np.int32 if n in _INT_COLUMNS else np.float64)
            for n in CATALOG_COLUMNS
        }
    )
    cat.meta["aperture_radius_pix"] = aperture_radius_pix
    return cat


@dataclass(frozen=True)
class SourceMeasurements:
    """Every step's result for one image; :meth:`table` lays them out as the catalog.

    Attributes:
        det, kron, win, psf_model, psf_fit, aper: the steps' results.
        xerr, yerr: (n,) final position errors, pixels.
        flags: (n,) int64 sep flags (bits 0-7) | aperture mask bits << ``MASK_FLAG_SHIFT``.
        class_star: (n,) stellarity from SPREAD_MODEL.
        flux_err_psf: (n,) PSF-flux errors with the CCD's floor, e-.
        psf_floor: the floor (fraction of the flux; NaN when not measured).
        fwhm: (n,) FWHM per source, pixels.
        aperture_radius_pix: radius of ``flux_aper``, pixels.
        threshold: detection threshold, sigma.
    """

    det: Detections
    kron: KronPhotometry
    win: WindowedCentroids
    psf_model: PsfModelFit
    psf_fit: PsfFit
    aper: ApertureFlux
    xerr: np.ndarray
    yerr: np.ndarray
    flags: np.ndarray
    class_star: np.ndarray
    flux_err_psf: np.ndarray
    psf_floor: float
    fwhm: np.ndarray
    aperture_radius_pix: float
    threshold: float

    def columns(self) -> dict[str, np.ndarray]:
        """Column name -> values, in the order of :data:`CATALOG_COLUMNS`."""
        det, kron, win, fit, aper = self.det, self.kron, self.win, self.psf_fit, self.aper
        return {
            "x": fit.x, "y": fit.y, "xerr": self.xerr, "yerr": self.yerr,
            "x_win": win.x, "y_win": win.y, "x_iso": det.x, "y_iso": det.y,
            "flux_auto": kron.flux, "flux_err_auto": kron.flux_err,
            "flux_aper": aper.flux, "flux_err_aper": aper.flux_err,
            "flux_psf": fit.flux, "flux_err_psf": self.flux_err_psf,
            "kron_radius": kron.kron_radius, "flux_radius": win.flux_radius,
            "a": det.a, "b": det.b, "theta": det.theta, "elongation": det.elongation,
            "fwhm": self.fwhm, "spread_model": fit.spread_model,
            "spreaderr_model": fit.spreaderr_model, "class_star": self.class_star,
            "snr": kron.snr, "background": det.background, "peak": det.peak,
            "isoarea": det.npix.astype(np.int32), "flags": self.flags.astype(np.int32),
            "mask_flags": aper.mask_bits.astype(np.int32),
        }  # fmt: skip

    def table(self) -> Table:
        """The catalog: columns :data:`CATALOG_COLUMNS`; ``meta`` with ``aperture_radius_pix``,
        ``threshold_sigma`` and, with a PSF model, ``psf_alpha_pix``, ``psf_beta``,
        ``psf_fwhm_pix``, ``psf_nstars``, ``psf_flux_floor``."""
        cat = Table()
        for name, values in self.columns().items():
            cat[name] = values
        cat.meta["aperture_radius_pix"] = self.aperture_radius_pix
        cat.meta["threshold_sigma"] = float(self.threshold)
        psf = self.psf_model.psf
        if psf is not None:
            cat.meta["psf_alpha_pix"] = psf.alpha
            cat.meta["psf_beta"] = psf.beta
            cat.meta["psf_fwhm_pix"] = psf.fwhm
            cat.meta["psf_nstars"] = psf.n_stars
            cat.meta["psf_flux_floor"] = self.psf_floor
        return cat
