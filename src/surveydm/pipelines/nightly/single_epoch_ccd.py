"""The ``single_epoch_ccd`` task in the task shape: one CCD of a science mosaic.

:meth:`SingleEpochCCD.quantum` resolves the declared inputs in the registry (the raw exposure,
master bias, flat, fringe frame and bad-pixel mask by validity range, the reference catalog);
:meth:`SingleEpochCCD.read` reads their arrays; the science is
:func:`surveydm.reduction.single_epoch.reduce_ccd` (pure); and
:func:`~surveydm.pipelines.base.recording.publish` writes the science, weight and mask files
and records their products, lineage, QC, the ``image`` row and the detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.archive import Archive
from surveydm.db.bulk import bulk_insert
from surveydm.db.models.calibration import Detection
from surveydm.db.models.production import Product
from surveydm.db.models.raw import Image, Mosaic
from surveydm.db.models.refcat import RefCat
from surveydm.instruments import CCD, Filter, Instrument
from surveydm.instruments.geometry import ccd_wcs
from surveydm.orchestration import JobContext, QualityFailure, Task, register_task
from surveydm.orchestration.qc import QCResult
from surveydm.pipelines.base.connections import (
    CalibrationInput,
    RawFrame,
    archive,
    lookup_calibrations,
    raw_frame,
    require_calibrations,
)
from surveydm.pipelines.base.recording import Lineage, RowsWriter, publish
from surveydm.pipelines.calibrations import CalibrationRef
from surveydm.pipelines.fitsio import RawFileError, read_ccd_image, read_raw_ccd
from surveydm.pipelines.instrument_versions import obs_set_instrument
from surveydm.pipelines.nightly.ccd_products import (
    CCD_DIMENSIONS,
    REDUCED_OUTPUTS,
    Exposure,
    detection_rows,
    image_values,
    reduced_files,
)
from surveydm.pipelines.nightly.qc import ccd_checks, fringe_check
from surveydm.pipelines.productions import job_release
from surveydm.pipelines.refcat import query_refcat
from surveydm.reduction.astrometry import STATUS_OK
from surveydm.reduction.single_epoch import CCDReduction, SingleEpochConfig, reduce_ccd

#: Margin added to the CCD's half-diagonal when selecting reference stars, deg.
REFCAT_MARGIN_DEG = 0.05
#: MJD of J2000.0 (epoch of the reference catalog positions' proper-motion reference).
MJD_J2000 = 51544.5


@dataclass(frozen=True)
class CCDQuantum:
    """What one CCD job works on, read from the registry.

    Attributes:
        data_id: ``obs_set, mosaic_id, ccd, filter, instrument, filter_tray``.
        raw: the raw exposure; exposure: its header values; pointing: (ra, dec) deg.
        reduced_mosaic_id: the ``red_science`` mosaic its image row belongs to.
        instrument, band: the camera and the filter covering the CCD.
        calibrations: chosen master frames by role; refcat: (name, product id).
    """

    data_id: dict[str, Any]
    raw: RawFrame
    exposure: Exposure
    pointing: tuple[float, float]
    reduced_mosaic_id: int
    instrument: Instrument
    band: Filter
    calibrations: dict[str, CalibrationRef | None]
    refcat: tuple[str, int | None]


@dataclass
class CCDInputs:
    """The arrays and tables :func:`reduce_ccd` takes, read for one quantum."""

    amps: dict[int, np.ndarray]
    ccd: CCD  # completed from the raw file's headers
    bias: np.ndarray
    flat: np.ndarray
    fringe: np.ndarray | None
    bad_pixel_mask: np.ndarray | None
    initial_wcs: WCS
    reference: Table


@register_task
class SingleEpochCCD(Task):
    """Detrend, clean, extract, calibrate and record one CCD of a science mosaic."""

    name = "single_epoch_ccd"
    description = "single-epoch reduction of one CCD"
    calibrations = (
        CalibrationInput("master_bias", "bias",
                         missing="no valid master bias within the search window"),
        CalibrationInput("master_flat", "flat", ("instrument", "filter_tray"),
                         missing="no valid master flat for tray {filter_tray} within the search "
                         "window: observe flats or reduce a night that has them"),
        CalibrationInput("master_fringe", "fringe", ("instrument", "filter_tray")),
        CalibrationInput("bad_pixel_mask", "bpm"),
    )  # fmt: skip
    outputs = tuple(REDUCED_OUTPUTS.values())

    def run(self, ctx: JobContext) -> dict[str, Any]:
        store = archive()
        q = self.quantum(ctx, store)
        inputs = self.read(ctx, store, q)
        result = reduce_ccd(
            inputs.amps,
            inputs.ccd,
            q.band,
            exptime=q.exposure.exptime or 0.0,
            airmass=q.exposure.airmass or 1.0,
            pixel_scale=q.instrument.pixel_scale_arcsec,
            initial_wcs=inputs.initial_wcs,
            reference=inputs.reference,
            bias=inputs.bias,
            flat=inputs.flat,
            fringe=inputs.fringe,
            bad_pixel_mask=inputs.bad_pixel_mask,
            config=SingleEpochConfig.from_mapping(ctx.config.get("single_epoch")),
        )
        m = result.metrics
        if m.astro_status != STATUS_OK:
            ctx.log(f"astrometry: {m.astro_status} ({m.astro_nstars} matches)")
        checks = ccd_checks(m)
        if q.band.fringing:
            fringe = q.calibrations["fringe"]
            checks.insert(0, fringe_check(q.band.name, inputs.fringe is not None,
                                          fringe.night if fringe else None))  # fmt: skip
        published = publish(
            ctx,
            store,
            reduced_files(store, job_release(ctx), q.data_id, q.exposure, result),
            self.lineage(q, inputs.fringe is not None, inputs.bad_pixel_mask is not None),
            checks,
            rows=self._rows(ctx, q, result),
        )
        return m.scalars() | {"files": published.paths, "quality": published.quality}

    def quantum(self, ctx: JobContext, store: Archive) -> CCDQuantum:
        """Resolve the raw exposure, calibrations and reference catalog of this CCD.

        Raises:
            QualityFailure: a required calibration or the reference catalog is missing.
        """
        cfg, num = ctx.config, int(ctx.config["ccd_num"])
        refcat_name = cfg.get("refcat", "pixelsim")
        with ctx.registry.session(write=False) as s:
            raw = s.get(Mosaic, cfg["mosaic_id"])
            instrument = obs_set_instrument(s, raw.obs_set)
            band = instrument.filter(instrument.tray(raw.filter_tray).filters[num])
            data_id = {
                "obs_set": raw.obs_set.obs_set,
                "mosaic_id": raw.id,
                "ccd": num,
                "filter": band.name,
                "instrument": instrument.name,
                "filter_tray": raw.filter_tray,
            }
            frame = raw_frame(store, raw)
            calibs = lookup_calibrations(s, self.calibrations, data_id, frame.when)
            refcat = s.scalar(select(RefCat).where(RefCat.name == refcat_name))
            exposure = Exposure(raw.filename, raw.exptime, raw.mjd_obs, raw.airmass)
            pointing = (raw.ra, raw.dec)
        require_calibrations(self.calibrations, calibs, data_id)
        if refcat is None:
            raise QualityFailure(f"reference catalog {refcat_name!r} is not loaded")
        return CCDQuantum(
            data_id, frame, exposure, pointing, int(cfg["reduced_mosaic_id"]), instrument,
            band, calibs, (refcat_name, refcat.product_id),
        )  # fmt: skip

    def read(self, ctx: JobContext, store: Archive, q: CCDQuantum) -> CCDInputs:
        """Read the raw amplifiers, master frames and reference stars of this CCD.

        Raises:
            QualityFailure: the raw file is unreadable or truncated.
        """
        num = q.data_id["ccd"]
        try:
            raw = read_raw_ccd(q.raw.path, q.instrument, num)
        except RawFileError as exc:
            raise QualityFailure(str(exc)) from exc
        fringe = None
        ref = q.calibrations["fringe"]
        if q.band.fringing and ref is not None:
            try:
                fringe = read_ccd_image(store.abspath(ref.path), num)
            except RawFileError:
                fringe = None  # a fringe frame without this CCD: go without, QC says so
        bpm = None
        if q.calibrations["bpm"] is not None:
            try:
                bpm = read_ccd_image(store.abspath(q.calibrations["bpm"].path), num)
                bpm = bpm.astype(np.uint16)
            except RawFileError:
                bpm = None  # a mask without this CCD: the flat's bad pixels only
        wcs0 = ccd_wcs(q.instrument, num, *q.pointing, distortion=False)
        return CCDInputs(
            raw.amps,
            raw.ccd,
            read_ccd_image(store.abspath(q.calibrations["bias"].path), num),
            read_ccd_image(store.abspath(q.calibrations["flat"].path), num),
            fringe,
            bpm,
            wcs0,
            self._reference(ctx, q, wcs0),
        )

    @staticmethod
    def _reference(ctx: JobContext, q: CCDQuantum, wcs0: WCS) -> Table:
        """Reference stars over the CCD (half-diagonal + margin) at the exposure's epoch."""
        ny, nx = q.instrument.ccd(q.data_id["ccd"]).shape
        cra, cdec = wcs0.all_pix2world([[nx / 2, ny / 2]], 0)[0]
        radius = np.hypot(nx, ny) / 2 * q.instrument.pixel_scale_arcsec / 3600 + REFCAT_MARGIN_DEG
        epoch = 2000.0 + ((q.exposure.mjd or MJD_J2000) - MJD_J2000) / 365.25
        return query_refcat(ctx.registry, q.refcat[0], cra, cdec, radius, q.band.name, epoch=epoch)

    @staticmethod
    def lineage(q: CCDQuantum, fringe_used: bool, bpm_used: bool = False) -> Lineage:
        """Inputs of the CCD's products: raw file, master bias and flat, the master fringe and
        the bad-pixel mask when they were applied, and the reference catalog."""
        roles = (
            ("bias", "flat") + (("fringe",) if fringe_used else ()) + (("bpm",) if bpm_used else ())
        )
        products = {role: [q.calibrations[role].product_id] for role in roles}
        products["refcat"] = [q.refcat[1]] if q.refcat[1] else []
        return Lineage([q.raw], products)

    @staticmethod
    def _rows(ctx: JobContext, q: CCDQuantum, result: CCDReduction) -> RowsWriter:
        """The ``image`` row and detections recorded with the CCD's products."""
        values = image_values(result, q.band, q.exposure.exptime or 0.0)
        dets = detection_rows(
            result.catalog, q.band.name, ctx.production_id, q.instrument.pixel_scale_arcsec
        )

        def rows(session: Session, products: dict[str, Product], quality: QCResult) -> None:
            image = Image(
                mosaic_id=q.reduced_mosaic_id,
                ccd_num=q.data_id["ccd"],
                product_id=products[REDUCED_OUTPUTS["sci"].product_type].id,
                **values,
            )
            session.add(image)
            session.flush()
            if dets:
                for row in dets:
                    row["image_id"] = image.id
                bulk_insert(session, Detection.__table__, dets)  # COPY on PostgreSQL

        return rows


__all__ = ["CCD_DIMENSIONS", "CCDInputs", "CCDQuantum", "SingleEpochCCD"]
