"""The ``single_epoch`` task: one science mosaic, one ``single_epoch_ccd`` sub-job per CCD,
then the exposure's metrics (medians over its reduced CCDs) and QC on the reduced mosaic row."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db.models.raw import Image, Mosaic
from surveydm.orchestration import JobContext, Task, register_task
from surveydm.pipelines.base.recording import record_checks
from surveydm.pipelines.fitsio import ccd_extname
from surveydm.pipelines.instrument_versions import obs_set_instrument
from surveydm.pipelines.nightly.qc import mosaic_checks

#: Columns a reduced mosaic copies from its raw mosaic.
_COPIED = (
    "obs_set_id", "filename", "exp_num", "date_obs", "mjd_obs", "exptime", "filter_tray",
    "object", "ra", "dec", "healpix", "airmass", "amb_temp", "humidity", "pressure",
    "wind_spd", "wind_dir", "instrument",
)  # fmt: skip


@dataclass(frozen=True)
class MosaicMetrics:
    """Exposure-level figures: medians over its reduced CCDs (``mosaic`` columns).

    Attributes:
        median_psf_fwhm: arcsec; zp_nightly: AB mag for 1 e-/s; transparency;
        sky_background: e-/s/pixel; astro_rms: arcsec; astro_nstars: sum over CCDs;
        astro_status, photo_status: ``ok`` when every CCD solved / was calibrated, else
        ``partial``.
    """

    median_psf_fwhm: float | None
    zp_nightly: float | None
    transparency: float | None
    sky_background: float | None
    astro_rms: float | None
    astro_nstars: int
    astro_status: str
    photo_status: str


def mosaic_metrics(images: list[Image], exptime: float | None) -> MosaicMetrics:
    """Medians over the reduced CCD rows ``images`` (``bkg_mean`` e-/pixel / ``exptime`` s
    gives the sky background per second)."""

    def med(attr: str) -> float | None:
        vals = [getattr(i, attr) for i in images if getattr(i, attr) is not None]
        return float(np.median(vals)) if vals else None

    astro_ok = [i for i in images if i.astro_rms is not None]
    sky = med("bkg_mean")
    return MosaicMetrics(
        median_psf_fwhm=med("psf_fwhm"),
        zp_nightly=med("zp_nightly"),
        transparency=med("transparency"),
        sky_background=sky / exptime if sky is not None and exptime else None,
        astro_rms=med("astro_rms"),
        astro_nstars=int(sum(i.astro_nstars or 0 for i in images)),
        astro_status="ok" if len(astro_ok) == len(images) and images else "partial",
        photo_status="ok" if all(i.zp_nightly is not None for i in images) else "partial",
    )


def reduced_mosaic(session: Session, raw: Mosaic, production_id: int | None) -> Mosaic:
    """The reduced (``red_science``) mosaic row of a raw science mosaic in a production,
    created on first use."""
    red = session.scalar(
        select(Mosaic).where(
            Mosaic.parent_id == raw.id,
            Mosaic.kind == "red_science",
            Mosaic.production_id == production_id,
        )
    )
    if red is None:
        copy = {c: getattr(raw, c) for c in _COPIED}
        red = Mosaic(kind="red_science", parent_id=raw.id, production_id=production_id, **copy)
        session.add(red)
        session.flush()
    return red


@register_task
class SingleEpoch(Task):
    """One science mosaic: a single_epoch_ccd sub-job per CCD, then mosaic metrics and QC."""

    name = "single_epoch"
    description = "single-epoch reduction of one science mosaic"

    def prolog(self, ctx: JobContext) -> None:
        with ctx.registry.session() as s:
            raw = s.get(Mosaic, ctx.config["mosaic_id"])
            red = reduced_mosaic(s, raw, ctx.production_id)
            instrument = obs_set_instrument(s, raw.obs_set)
            red_id = red.id
        for ccd in instrument.ccds:
            ctx.add_subjob(
                "single_epoch_ccd",
                name=f"{raw.filename} {ccd_extname(ccd.num)}",
                config={**ctx.config, "ccd_num": ccd.num, "reduced_mosaic_id": red_id},
            )

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        done = sum(j.status == "done" for j in subs)
        with ctx.registry.session() as s:
            raw = s.get(Mosaic, ctx.config["mosaic_id"])
            red = reduced_mosaic(s, raw, ctx.production_id)
            images = list(
                s.scalars(select(Image).where(Image.mosaic_id == red.id, Image.amp_num.is_(None)))
            )
            metrics = mosaic_metrics(images, raw.exptime)
            for key, value in asdict(metrics).items():
                setattr(red, key, value)
            red.detrend_status = "ok" if done == len(subs) else f"{done}/{len(subs)} CCDs"
            red_id = red.id
        checks = mosaic_checks(
            done / max(len(subs), 1), metrics.median_psf_fwhm, metrics.transparency,
            metrics.astro_rms,
        )  # fmt: skip
        status = record_checks(ctx, checks)
        with ctx.registry.session() as s:
            s.get(Mosaic, red_id).qc_status = status
        ctx.output = {**(ctx.output or {}), **asdict(metrics), "qc_status": status}
