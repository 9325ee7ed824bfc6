"""Named QC limits of tile co-adds and the checks built from a :class:`TileCoadd`."""

from __future__ import annotations

from dataclasses import dataclass

from surveydm.orchestration.qc import QCLimit
from surveydm.pipelines.base.recording import Check
from surveydm.reduction.coadd.stack import TileCoadd


@dataclass(frozen=True)
class CoaddLimits:
    """QC limits of a co-added tile: PSF FWHM (arcsec), rejected pixel fraction, tile-area
    fraction, depth measured (the limiting magnitude must be finite)."""

    psf_fwhm: QCLimit = QCLimit(max=4.0, warn_max=2.5)
    rejected_fraction: QCLimit = QCLimit(max=0.2, warn_max=0.05)
    area_fraction: QCLimit = QCLimit(min=0.05, warn_min=0.3)
    depth: QCLimit = QCLimit(min=0.0)


QC_LIMITS = CoaddLimits()


def coadd_checks(result: TileCoadd) -> list[Check]:
    """PSF FWHM, rejected fraction, tile-area fraction and depth of a co-add."""
    fwhm = result.psf.fwhm * result.pixel_scale if result.psf is not None else None
    seed = "seed 002 (tile coadding, depth)"
    return [
        Check("psf_fwhm", fwhm, QC_LIMITS.psf_fwhm, "arcsec", "FWHM of the tile PSF", seed),
        Check(
            "rejected_fraction",
            result.coadd.rejected_fraction,
            QC_LIMITS.rejected_fraction,
            "",
            "input pixels rejected",
            seed,
        ),
        Check(
            "area_fraction",
            result.area_fraction,
            QC_LIMITS.area_fraction,
            "",
            "tile fraction with exposure above the area threshold",
            seed,
        ),
        Check(
            "depth",
            result.depth.mag_lim,
            QC_LIMITS.depth,
            "mag",
            "5-sigma limiting magnitude",
            seed,
        ),
    ]
