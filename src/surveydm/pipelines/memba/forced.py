"""The ``forced_phot`` task: forced aperture photometry of the deep reference sources on one
reduced CCD image (seed 000 section 6.1 item 3; one job per CCD as in PAUdm).

:meth:`ForcedPhot.quantum` resolves the image, its science / weight / mask products and the
reference sources over it; the science is
:func:`surveydm.reduction.forced_photometry.forced_photometry` (pure); the rows, a
``forced_aperture`` product and its lineage (the image's science product and the reference
catalog) are recorded in the transaction that marks the job done, so a re-run never duplicates
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from surveydm.db.models.multiepoch import ForcedAperture
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic
from surveydm.db.spatial import healpix_index
from surveydm.orchestration import JobContext, QualityFailure, Task, register_task
from surveydm.pipelines.base.connections import archive
from surveydm.pipelines.memba.refcat import DeepSources, deep_sources_in_cone
from surveydm.pipelines.productions import add_product
from surveydm.reduction.forced_photometry import (
    ForcedApertures,
    ForcedConfig,
    calibrated_error_njy,
    calibrated_flux_njy,
    forced_photometry,
    sky_to_pixel_ellipses,
)

#: Kinds of the reduced CCD products forced photometry reads.
REDUCED_KINDS = ("reduced_sci", "reduced_wht", "reduced_msk")


@dataclass(frozen=True)
class ImageQuantum:
    """What one forced-photometry job works on, read from the registry.

    Attributes:
        image_id, band; exptime: s; zeropoint: AB mag of 1 e-/s; zp_err: its error, mag
        (0 when the nightly pipeline recorded none); fwhm_arcsec: PSF FWHM;
        paths: absolute paths by product type (REDUCED_KINDS); sci_product_id;
        centre (ra, dec) and radius (deg) of a cone covering the image.
    """

    image_id: int
    band: str
    exptime: float
    zeropoint: float
    zp_err: float
    fwhm_arcsec: float
    paths: dict[str, Any]
    sci_product_id: int
    centre: tuple[float, float]
    radius: float


@register_task
class ForcedPhot(Task):
    """Forced aperture photometry of the reference sources on one reduced CCD image."""

    name = "forced_phot"
    description = "memba forced aperture photometry of one reduced CCD"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        q = self.quantum(ctx)
        science, weight, mask, wcs = self.read(q)
        src = deep_sources_in_cone(ctx.registry, ctx.config["refcat_id"], *q.centre, q.radius)
        ny, nx = science.shape
        ell = sky_to_pixel_ellipses(wcs, src.ra, src.dec, src.a, src.b, src.theta)
        on = (ell.x >= 0) & (ell.x <= nx - 1) & (ell.y >= 0) & (ell.y <= ny - 1)
        pixel_scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600
        result = forced_photometry(
            science, weight, mask, ell.x[on], ell.y[on], ell.a[on], ell.b[on], ell.theta[on],
            q.fwhm_arcsec / pixel_scale, src.point_source[on],
            ForcedConfig(**ctx.config.get("forced", {})),
        )  # fmt: skip
        ctx.qc(
            "aperture_correction",
            result.aperture_correction,
            min=0.9,
            max=3.0,
            warn_max=2.0,
            description="curve-of-growth correction of the forced apertures",
        )
        rows = forced_rows(result, _subset(src, on), q, ctx.production_id)
        refcat_product = ctx.config.get("refcat_product_id")

        def record(session: Session) -> None:
            if rows:
                session.execute(insert(ForcedAperture), rows)
            inputs = {"image": [q.sci_product_id]}
            if refcat_product:
                inputs["refcat"] = [refcat_product]
            add_product(
                session,
                "forced_aperture",
                data_id={"image_id": q.image_id},
                production_id=ctx.production_id,
                job_id=ctx.job_id,
                inputs=inputs,
            )

        ctx.on_commit(record)
        return {"image_id": q.image_id, "n_sources": len(rows),
                "aperture_correction": result.aperture_correction}  # fmt: skip

    def quantum(self, ctx: JobContext) -> ImageQuantum:
        """Resolve the image row, its exposure and product files.

        Raises:
            QualityFailure: the image has no zero-point, PSF FWHM or exposure time, or a
                product file is missing from the registry.
        """
        image_id = int(ctx.config["image_id"])
        with ctx.registry.session(write=False) as s:
            img = s.get(Image, image_id)
            if img is None:
                raise QualityFailure(f"image {image_id} does not exist")
            mosaic = s.get(Mosaic, img.mosaic_id)
            if img.zp_nightly is None or not img.psf_fwhm or not mosaic.exptime:
                raise QualityFailure(
                    f"image {image_id} has no zero-point, PSF FWHM or exposure time: "
                    "its nightly reduction did not calibrate it"
                )
            sci = s.get(Product, img.product_id)
            rows = s.execute(
                select(Product.product_type, Product.id, ArchiveFile.path)
                .join(ArchiveFile, ArchiveFile.id == Product.file_id)
                .where(Product.job_id == sci.job_id, Product.product_type.in_(REDUCED_KINDS))
            ).all()
            paths = {t: p for t, _, p in rows}
            centre = ((img.ra_min + img.ra_max) / 2, (img.dec_min + img.dec_max) / 2)
            half = np.hypot(
                (img.ra_max - img.ra_min) * np.cos(np.radians(centre[1])),
                img.dec_max - img.dec_min,
            )
            q = ImageQuantum(
                image_id,
                img.filter,
                float(mosaic.exptime),
                float(img.zp_nightly),
                float(img.zp_nightly_err or 0.0),
                float(img.psf_fwhm),
                paths,
                sci.id,
                centre,
                float(half) / 2 + 0.01,
            )
        lacking = [k for k in REDUCED_KINDS if k not in paths]
        if lacking:
            raise QualityFailure(f"image {image_id}: no {', '.join(lacking)} product file")
        return q

    @staticmethod
    def read(q: ImageQuantum) -> tuple[np.ndarray, np.ndarray, np.ndarray, WCS]:
        """Science (e-), weight (e-^-2), mask and WCS of the image, native-endian."""
        store = archive()
        out = []
        for kind in REDUCED_KINDS:
            with fits.open(store.abspath(q.paths[kind])) as hdul:
                data = hdul[0].data
                out.append(data.astype(data.dtype.newbyteorder("=")))
                if kind == "reduced_sci":
                    wcs = WCS(hdul[0].header)
        return out[0].astype(np.float32), out[1].astype(np.float32), out[2], wcs


def _subset(src: DeepSources, sel: np.ndarray) -> DeepSources:
    return DeepSources(*(getattr(src, f)[sel] for f in DeepSources.__dataclass_fields__))


def forced_rows(
    result: ForcedApertures, src: DeepSources, q: ImageQuantum, production_id: int | None
) -> list[dict[str, Any]]:
    """``forced_aperture`` rows of one image: fluxes calibrated to nJy with the image's
    zero-point (errors with its error), NaN -> NULL, theta in degrees."""
    flux = calibrated_flux_njy(result.flux, q.exptime, q.zeropoint)
    err = calibrated_error_njy(result.flux, result.flux_err, q.exptime, q.zeropoint, q.zp_err)
    hp = healpix_index(src.ra, src.dec)
    rows = []
    for i in range(len(result)):
        rows.append(
            {
                "production_id": production_id,
                "image_id": q.image_id,
                "ref_id": int(src.ref_id[i]),
                "band": q.band,
                "healpix": int(hp[i]),
                "aperture_x": float(result.x[i]),
                "aperture_y": float(result.y[i]),
                "aperture_a": float(result.a[i]),
                "aperture_b": float(result.b[i]),
                "aperture_theta": float(np.degrees(result.theta[i])),
                "annulus_a_in": float(result.a_in[i]),
                "annulus_a_out": float(result.a_out[i]),
                "annulus_b_in": float(result.b_in[i]),
                "annulus_b_out": float(result.b_out[i]),
                "annulus_median": _opt(result.bkg_median[i]),
                "annulus_samples": int(result.bkg_samples[i]),
                "annulus_sigma": _opt(result.bkg_sigma[i]),
                "aperture_correction": float(result.aperture_correction),
                "flux": _opt(flux[i]),
                "flux_error": _opt(err[i]),
                "flag": int(result.flag[i]),
            }  # fmt: skip
        )
    return rows


def _opt(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
