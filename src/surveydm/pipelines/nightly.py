"""The nightly pipeline as job-system tasks (seed 000 section 6.1, figure 6).

Per observation set::

    register (prolog: one register_file sub-job per manifest file;
              epilog: creates the nightly job once every file is registered)
      nightly (prolog: master_bias, then one master_flat per filter tray after the bias,
               then one single_epoch per science mosaic after the master flat of its tray;
               epilog: night summary)
        single_epoch (prolog: one single_epoch_ccd per CCD; epilog: mosaic metrics and QC)

Calibration frames are selected by validity range (:mod:`surveydm.pipelines.calibrations`), so
an exposure whose tray had no flats that night uses the nearest valid master flat of another
night, or its CCD jobs end with a quality failure saying why. Products are written through the
archive under temporary names and registered in the transaction that marks the job done
(``ctx.on_commit``), with their production and inputs, so a re-run never duplicates them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.archive import Archive
from surveydm.config import load_settings
from surveydm.db.models.calibration import CalibrationFrame, Detection, ImageZeroPoint
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet
from surveydm.db.models.refcat import RefCat
from surveydm.db.spatial import healpix_index
from surveydm.instruments import Instrument, load_instrument
from surveydm.instruments.geometry import ccd_wcs
from surveydm.orchestration import JobContext, QualityFailure, Task, register_task
from surveydm.pipelines.calibrations import best_calibration, night_window
from surveydm.pipelines.fitsio import (
    RawFileError,
    ccd_extname,
    read_ccd_image,
    read_raw_ccd,
    write_ccd_mosaic,
    write_image,
)
from surveydm.pipelines.productions import add_product, raw_product
from surveydm.pipelines.refcat import query_refcat
from surveydm.pipelines.register import RegistrationError, obs_set_files, register_file
from surveydm.pipelines.single_epoch import SingleEpochConfig, reduce_ccd
from surveydm.reduction.assemble import assemble_ccd
from surveydm.reduction.calibration_frames import flat_qc, master_bias, master_flat

#: QC limits of the nightly pipeline: (fail_min, fail_max, warn_min, warn_max).
QC_LIMITS: dict[str, tuple[float | None, float | None, float | None, float | None]] = {
    "psf_fwhm": (None, 2.5, None, 1.6),
    "astro_rms": (None, 0.15, None, 0.06),
    "astro_nstars": (10, None, 30, None),
    "transparency": (0.5, 1.2, 0.8, None),
    "zp_err": (None, 0.05, None, 0.02),
}


def _archive() -> Archive:
    return Archive(load_settings().archive_root)


def _obs_set(session: Session, obs_set: str) -> ObsSet:
    row = session.scalar(select(ObsSet).where(ObsSet.obs_set == obs_set))
    if row is None:
        raise QualityFailure(f"observation set {obs_set!r} is not registered")
    return row


def _mosaics(session: Session, obs_set_id: int, kind: str) -> list[Mosaic]:
    return list(
        session.scalars(
            select(Mosaic)
            .where(Mosaic.obs_set_id == obs_set_id, Mosaic.kind == kind)
            .order_by(Mosaic.date_obs, Mosaic.id)
        )
    )


def _when(m: Mosaic) -> datetime:
    t = m.date_obs
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _record_file(session: Session, stored: Any) -> ArchiveFile:
    """The archive_file row of a stored product (re-used if the path is already recorded)."""
    row = session.scalar(select(ArchiveFile).where(ArchiveFile.path == stored.path))
    if row is None:
        row = ArchiveFile(
            path=stored.path, size=stored.size, adler32=stored.adler32, md5=stored.md5
        )
        session.add(row)
        session.flush()
    return row


# -- register -----------------------------------------------------------------------------


@register_task
class RegisterObsSet(Task):
    """Register every file of an archived observation set, then start its nightly job."""

    name = "register"
    description = "register an observation set (one sub-job per file), then run nightly"

    def prolog(self, ctx: JobContext) -> None:
        try:
            files = obs_set_files(ctx.registry, ctx.config["obs_set"])
        except RegistrationError as exc:
            raise QualityFailure(str(exc)) from exc
        if not files:
            raise QualityFailure(f"observation set {ctx.config['obs_set']!r} has no files")
        for name, _path, file_id in files:
            if file_id is None:
                ctx.log(f"{name}: listed in the manifest but not archived")
                continue
            ctx.add_subjob(
                "register_file",
                name=f"register {name}",
                config={"obs_set": ctx.config["obs_set"], "archive_file_id": file_id},
            )
        ctx.log(f"{len(files)} files to register")

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        if not ctx.config.get("nightly", True) or any(j.task == "nightly" for j in subs):
            return
        failed = [j.name for j in subs if j.status != "done"]
        if failed:
            ctx.log(f"{len(failed)} files not registered: {', '.join(failed[:10])}")
        ctx.add_subjob(
            "nightly",
            name=f"nightly {ctx.config['obs_set']}",
            config={k: v for k, v in ctx.config.items() if k != "nightly"},
        )


@register_task
class RegisterFile(Task):
    """Register one archived raw file: mosaic, CCD and amplifier rows with pixel statistics."""

    name = "register_file"
    description = "register one raw file (headers + quick pixel statistics)"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        try:
            result = register_file(ctx.registry, _archive(), ctx.config["archive_file_id"])
        except RegistrationError as exc:  # bad header or unreadable FITS: the data is bad
            raise QualityFailure(str(exc)) from exc
        return {"mosaic_id": result.mosaic_id, "kind": result.kind}


# -- nightly ------------------------------------------------------------------------------


@register_task
class Nightly(Task):
    """Master bias -> master flats per tray -> single epoch per science mosaic."""

    name = "nightly"
    description = "nightly reduction of an observation set"

    def prolog(self, ctx: JobContext) -> None:
        cfg = ctx.config
        with ctx.registry.session(write=False) as s:
            obs = _obs_set(s, cfg["obs_set"])
            biases = _mosaics(s, obs.id, "bias")
            flats = _mosaics(s, obs.id, "flat")
            science = _mosaics(s, obs.id, "science")
        bias_ref = None
        if biases:
            bias_ref = ctx.add_subjob("master_bias", name=f"master bias {obs.obs_set}", config=cfg)
        after_bias = [bias_ref] if bias_ref else []
        flat_refs = {}
        for tray in sorted({m.filter_tray for m in flats if m.filter_tray}):
            flat_refs[tray] = ctx.add_subjob(
                "master_flat",
                name=f"master flat {obs.obs_set} {tray}",
                config={**cfg, "filter_tray": tray},
                after=after_bias,
            )
        instrument = load_instrument(obs.instrument)
        fringe_refs = {}
        for tray in sorted({m.filter_tray for m in science if m.filter_tray}):
            if _fringing_ccds(instrument, tray):
                fringe_refs[tray] = ctx.add_subjob(
                    "master_fringe",
                    name=f"master fringe {obs.obs_set} {tray}",
                    config={**cfg, "filter_tray": tray},
                    after=[flat_refs[tray]] if tray in flat_refs else after_bias,
                )
        for m in science:
            after = [flat_refs[m.filter_tray]] if m.filter_tray in flat_refs else after_bias
            if m.filter_tray in fringe_refs:
                after = [*after, fringe_refs[m.filter_tray]]
            ctx.add_subjob(
                "single_epoch",
                name=f"single epoch {m.filename}",
                config={**cfg, "mosaic_id": m.id},
                after=after,
            )
        missing = sorted({m.filter_tray for m in science} - set(flat_refs))
        ctx.log(
            f"{len(biases)} bias, {len(flats)} flats in {len(flat_refs)} trays, "
            f"{len(science)} science mosaics"
            + (
                f"; no flats tonight for trays {missing}: nearest valid master flat"
                if missing
                else ""
            )
        )

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        counts: dict[str, int] = {}
        for j in subs:
            counts[f"{j.task}:{j.status}"] = counts.get(f"{j.task}:{j.status}", 0) + 1
        ctx.output = {**(ctx.output or {}), "subjobs": counts}


# -- master calibrations ------------------------------------------------------------------


def _raw_path(archive: Archive, m: Mosaic) -> Path:
    return archive.abspath(m.archive_file.path)


class _MasterTask(Task):
    """Shared steps of master calibration tasks."""

    kind = ""

    def _inputs(self, s: Session, obs: ObsSet, cfg: dict[str, Any]) -> list[Mosaic]:
        raise NotImplementedError

    def _combine(self, frames: list[np.ndarray]) -> Any:
        raise NotImplementedError

    def run(self, ctx: JobContext) -> dict[str, Any]:
        cfg = ctx.config
        archive = _archive()
        with ctx.registry.session(write=False) as s:
            obs = _obs_set(s, cfg["obs_set"])
            instrument = load_instrument(obs.instrument)
            inputs = self._inputs(s, obs, cfg)
            for m in inputs:
                _ = m.archive_file.path
            bias_frame = self._bias_for(ctx, s, instrument, obs, inputs)
            night = obs.night.isoformat()
            obs_name, obs_id = obs.obs_set, obs.id
        if not inputs:
            raise QualityFailure(f"no {self.kind} input frames in {obs_name}")
        images, stats, bad_inputs = {}, {}, set()
        for ccd in instrument.ccds:
            bias = None
            if bias_frame is not None:
                bias = read_ccd_image(archive.abspath(bias_frame[1]), ccd.num)
            frames = []
            for m in inputs:
                if m.id in bad_inputs:
                    continue
                try:
                    _, amps = read_raw_ccd(_raw_path(archive, m), instrument, ccd.num)
                    img = assemble_ccd(amps, ccd).image
                except (RawFileError, ValueError) as exc:
                    ctx.log(f"{m.filename}: skipped ({exc})")
                    bad_inputs.add(m.id)
                    continue
                if bias is not None:
                    img -= bias
                frames.append(img)
            if not frames:
                raise QualityFailure(f"no readable {self.kind} frames for CCD {ccd.num}")
            result = self._combine(frames)
            images[ccd.num] = result.image
            stats[ccd.num] = {k: float(v) for k, v in result.stats.items()}
        used = [m for m in inputs if m.id not in bad_inputs]
        results = self._qc(ctx, stats, images, instrument)
        tray = cfg.get("filter_tray")
        fname = f"{self.kind}.{obs_name}{'.' + tray if tray else ''}.fits"
        rel = archive.red_path(load_settings().release, obs_name, fname)
        header = {
            "OBSTYPE": self.kind.upper(),
            "INSTRUME": instrument.name,
            "OBSSET": obs_name,
            "FILTRAY": tray,
            "NCOMBINE": len(used),
            "PRODID": ctx.production_id,
        }
        stored = archive.write_product(rel, lambda p: write_ccd_mosaic(p, images, header=header))
        valid_from, valid_until = night_window(night)
        quality = "bad" if "fail" in results else "warn" if "warn" in results else "ok"
        input_files = [(m.archive_file_id, m.id) for m in used]
        bias_product = bias_frame[2] if bias_frame else None

        def record(session: Session) -> None:
            f = _record_file(session, stored)
            raw_ids = [raw_product(session, fid, {"mosaic_id": mid}).id for fid, mid in input_files]
            inputs_by_role = {"raw": raw_ids}
            if bias_product:
                inputs_by_role["bias"] = [bias_product]
            prod = add_product(
                session,
                self.kind,
                data_id={"obs_set": obs_name, "filter_tray": tray},
                production_id=ctx.production_id,
                job_id=ctx.job_id,
                file_id=f.id,
                inputs=inputs_by_role,
                quality=quality,
            )
            session.add(
                CalibrationFrame(
                    kind=self.kind,
                    instrument=instrument.name,
                    filter_tray=tray,
                    night=night,
                    obs_set_id=obs_id,
                    valid_from=valid_from,
                    valid_until=valid_until,
                    n_input=len(used),
                    quality=quality,
                    stats={str(k): v for k, v in stats.items()},
                    production_id=ctx.production_id,
                    product_id=prod.id,
                    job_id=ctx.job_id,
                )
            )

        ctx.on_commit(record)
        return {"file": stored.path, "n_input": len(used), "quality": quality}

    def _bias_for(self, ctx, s, instrument, obs, inputs):  # noqa: ANN001, ANN202
        return None

    def _qc(
        self, ctx: JobContext, stats: dict, images: dict[int, np.ndarray], instrument: Instrument
    ) -> list[str]:
        """Record the QC checks of the master frame; returns their results."""
        raise NotImplementedError


def _calibration_file(s: Session, frame: CalibrationFrame | None) -> tuple | None:
    if frame is None:
        return None
    prod = s.get(Product, frame.product_id)
    path = s.get(ArchiveFile, prod.file_id).path
    return frame.id, path, prod.id, frame.night


@register_task
class MasterBias(_MasterTask):
    """Overscan-corrected, sigma-clipped combination of the night's biases, per CCD."""

    name = "master_bias"
    kind = "master_bias"
    description = "master bias of an observation set"

    def _inputs(self, s, obs, cfg):  # noqa: ANN001, ANN202
        return _mosaics(s, obs.id, "bias")

    def _combine(self, frames):  # noqa: ANN001, ANN202
        return master_bias(frames)

    def _qc(self, ctx, stats, images, instrument):  # noqa: ANN001, ANN202
        def worst(key: str) -> float:
            return float(np.nanmax([abs(v.get(key, np.nan)) for v in stats.values()]))

        return [
            ctx.qc(
                "bias_level_max",
                worst("level"),
                max=50.0,
                warn_max=10.0,
                units="e-",
                description="largest |residual level| after overscan, over CCDs",
            ),
            ctx.qc(
                "bias_noise_max",
                worst("noise"),
                max=20.0,
                warn_max=10.0,
                units="e-",
                description="largest pixel noise of the master bias, over CCDs",
            ),
            ctx.qc(
                "bias_structure_max",
                worst("structure"),
                max=10.0,
                warn_max=3.0,
                units="e-",
                description="largest rms of the smoothed bias structure",
            ),
        ]


@register_task
class MasterFlat(_MasterTask):
    """Bias-subtracted, normalised flats of one filter tray combined with rejection."""

    name = "master_flat"
    kind = "master_flat"
    description = "master flat of one filter tray"

    def _inputs(self, s, obs, cfg):  # noqa: ANN001, ANN202
        return [m for m in _mosaics(s, obs.id, "flat") if m.filter_tray == cfg["filter_tray"]]

    def _bias_for(self, ctx, s, instrument, obs, inputs):  # noqa: ANN001, ANN202
        if not inputs:
            return None
        frame = best_calibration(s, "master_bias", instrument.name, _when(inputs[0]))
        if frame is None:
            ctx.log("no valid master bias: flats are combined without bias subtraction")
        return _calibration_file(s, frame)

    def _combine(self, frames):  # noqa: ANN001, ANN202
        return master_flat(frames)

    def _qc(self, ctx, stats, images, instrument):  # noqa: ANN001, ANN202
        resid = float(np.nanmax([v.get("residual_rms", np.nan) for v in stats.values()]))
        results = [
            ctx.qc(
                "flat_residual_rms_max",
                resid,
                max=0.05,
                warn_max=0.02,
                description="largest rms of frame-to-master residuals over CCDs",
            ),
        ]
        archive = _archive()
        with ctx.registry.session(write=False) as s:
            night_start, _ = night_window(_obs_set(s, ctx.config["obs_set"]).night.isoformat())
            previous = _calibration_file(
                s,
                best_calibration(
                    s,
                    "master_flat",
                    instrument.name,
                    night_start - timedelta(seconds=1),
                    filter_tray=ctx.config["filter_tray"],
                    max_days=365,
                ),
            )
        if previous is None:
            ctx.log("no previous master flat of this tray: stability not measured")
            return results
        stability = [
            flat_qc(image, previous=read_ccd_image(archive.abspath(previous[1]), num))[
                "stability_rms"
            ]
            for num, image in images.items()
        ]
        results.append(
            ctx.qc(
                "flat_stability_rms",
                max(stability),
                max=0.02,
                warn_max=0.01,
                reference=f"master flat of {previous[3]}",
                description="largest rms of the ratio to the previous master flat",
            )
        )
        return results


def _fringing_ccds(instrument: Instrument, tray: str) -> list[int]:
    """CCDs that the tray covers with a filter needing fringe correction."""
    return [
        num
        for num, name in instrument.tray(tray).filters.items()
        if instrument.filter(name).fringing
    ]


@register_task
class MasterFringe(Task):
    """Fringe frames of a filter tray's fringing CCDs from the night's science exposures.

    Each exposure is detrended (master bias and flat) and its sources masked
    (:func:`surveydm.reduction.fringe.fringe_source_mask`); the frames are normalised by their
    sky level and the dithered stack combined with a clipped median
    (:func:`surveydm.reduction.fringe.make_fringe_frame`; seed 002, fringing correction of the
    reddest J-PLUS bands). A second pass masks the sources again once the first frame's
    fringes are removed, down to the faint wings of stars that would leak into the frame.
    Fewer than ``min_frames`` exposures make no frame: the single-epoch jobs then use the
    nearest valid master fringe of another night, or go without and say so in their QC.
    """

    name = "master_fringe"
    description = "master fringe frames of one filter tray"
    min_frames = 2

    def run(self, ctx: JobContext) -> dict[str, Any]:
        from surveydm.reduction.fringe import fringe_source_mask, make_fringe_frame

        cfg, tray = ctx.config, ctx.config["filter_tray"]
        archive = _archive()
        with ctx.registry.session(write=False) as s:
            obs = _obs_set(s, cfg["obs_set"])
            instrument = load_instrument(obs.instrument)
            science = [m for m in _mosaics(s, obs.id, "science") if m.filter_tray == tray]
            for m in science:
                _ = m.archive_file.path
            when = _when(science[0]) if science else None
            bias = _calibration_file(s, best_calibration(s, "master_bias", instrument.name, when))
            flat = _calibration_file(
                s, best_calibration(s, "master_flat", instrument.name, when, filter_tray=tray)
            )
            night, obs_name, obs_id = obs.night.isoformat(), obs.obs_set, obs.id
        ccds = _fringing_ccds(instrument, tray)
        if len(science) < self.min_frames or bias is None or flat is None:
            why = (
                f"{len(science)} science exposures in tray {tray}"
                if len(science) < self.min_frames
                else "no valid master bias or flat"
            )
            ctx.log(f"no fringe frame made tonight ({why}); single epochs use another night's")
            ctx.qc(
                "fringe_frames",
                len(science),
                warn_min=self.min_frames,
                description="science exposures available for the fringe frame",
            )
            return {"made": False, "reason": why}
        images = {}
        for num in ccds:
            ccd = instrument.ccd(num)
            b = read_ccd_image(archive.abspath(bias[1]), num)
            f = read_ccd_image(archive.abspath(flat[1]), num)
            frames, masks = [], []
            for m in science:
                try:
                    _, amps = read_raw_ccd(_raw_path(archive, m), instrument, num)
                except RawFileError as exc:
                    ctx.log(f"{m.filename}: skipped ({exc})")
                    continue
                img = assemble_ccd(amps, ccd, bias=b, flat=f).image
                frames.append(img)
                masks.append(fringe_source_mask(img, mask=~(f > 0)))
            if len(frames) < self.min_frames:
                continue
            # second pass: sources masked down to the noise once the fringes are removed
            first = make_fringe_frame(frames, masks=masks)
            masks = [fringe_source_mask(img, fringe=first, mask=~(f > 0)) for img in frames]
            images[num] = make_fringe_frame(frames, masks=masks)
        ctx.qc(
            "fringe_frames",
            len(science),
            warn_min=self.min_frames,
            description="science exposures available for the fringe frame",
        )
        if not images:
            return {"made": False, "reason": "too few readable exposures"}
        rel = archive.red_path(
            load_settings().release, obs_name, f"master_fringe.{obs_name}.{tray}.fits"
        )
        header = {
            "OBSTYPE": "MASTER_FRINGE",
            "INSTRUME": instrument.name,
            "OBSSET": obs_name,
            "FILTRAY": tray,
            "NCOMBINE": len(science),
            "PRODID": ctx.production_id,
        }
        stored = archive.write_product(rel, lambda p: write_ccd_mosaic(p, images, header=header))
        valid_from, valid_until = night_window(night)
        inputs = [(m.archive_file_id, m.id) for m in science]

        def record(session: Session) -> None:
            f_row = _record_file(session, stored)
            raw_ids = [raw_product(session, fid, {"mosaic_id": mid}).id for fid, mid in inputs]
            prod = add_product(
                session,
                "master_fringe",
                data_id={"obs_set": obs_name, "filter_tray": tray},
                production_id=ctx.production_id,
                job_id=ctx.job_id,
                file_id=f_row.id,
                inputs={"raw": raw_ids, "bias": [bias[2]], "flat": [flat[2]]},
            )
            session.add(
                CalibrationFrame(
                    kind="master_fringe",
                    instrument=instrument.name,
                    filter_tray=tray,
                    night=night,
                    obs_set_id=obs_id,
                    valid_from=valid_from,
                    valid_until=valid_until,
                    n_input=len(science),
                    quality="ok",
                    stats={"ccds": sorted(images)},
                    production_id=ctx.production_id,
                    product_id=prod.id,
                    job_id=ctx.job_id,
                )
            )

        ctx.on_commit(record)
        return {"made": True, "file": stored.path, "ccds": sorted(images)}


# -- single epoch -------------------------------------------------------------------------


def _reduced_mosaic(session: Session, raw: Mosaic, production_id: int | None) -> Mosaic:
    """The reduced (``red_science``) mosaic row of a raw science mosaic in a production."""
    red = session.scalar(
        select(Mosaic).where(
            Mosaic.parent_id == raw.id,
            Mosaic.kind == "red_science",
            Mosaic.production_id == production_id,
        )
    )
    if red is None:
        copy = {
            c: getattr(raw, c)
            for c in (
                "obs_set_id",
                "filename",
                "exp_num",
                "date_obs",
                "mjd_obs",
                "exptime",
                "filter_tray",
                "object",
                "ra",
                "dec",
                "healpix",
                "airmass",
                "amb_temp",
                "humidity",
                "pressure",
                "wind_spd",
                "wind_dir",
                "instrument",
            )
        }
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
            red = _reduced_mosaic(s, raw, ctx.production_id)
            instrument = load_instrument(raw.instrument or raw.obs_set.instrument)
            red_id = red.id
        for ccd in instrument.ccds:
            ctx.add_subjob(
                "single_epoch_ccd",
                name=f"{raw.filename} {ccd_extname(ccd.num)}",
                config={**ctx.config, "ccd_num": ccd.num, "reduced_mosaic_id": red_id},
            )

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        with ctx.registry.session() as s:
            raw = s.get(Mosaic, ctx.config["mosaic_id"])
            red = _reduced_mosaic(s, raw, ctx.production_id)
            images = list(
                s.scalars(select(Image).where(Image.mosaic_id == red.id, Image.amp_num.is_(None)))
            )
            metrics = _mosaic_metrics(images, raw.exptime)
            for key, value in metrics.items():
                setattr(red, key, value)
            done = sum(j.status == "done" for j in subs)
            red.detrend_status = "ok" if done == len(subs) else f"{done}/{len(subs)} CCDs"
        lim = QC_LIMITS
        results = [
            ctx.qc(
                "ccds_reduced",
                done / max(len(subs), 1),
                min=0.5,
                warn_min=0.99,
                description="fraction of CCDs reduced",
            ),
            ctx.qc(
                "seeing",
                metrics.get("mean_psf_fwhm"),
                max=lim["psf_fwhm"][1],
                warn_max=lim["psf_fwhm"][3],
                units="arcsec",
                description="median PSF FWHM over CCDs",
            ),
            ctx.qc(
                "transparency",
                metrics.get("transparency"),
                min=lim["transparency"][0],
                warn_min=lim["transparency"][2],
                description="median over CCDs",
            ),
            ctx.qc(
                "astro_rms",
                metrics.get("astro_rms"),
                max=lim["astro_rms"][1],
                warn_max=lim["astro_rms"][3],
                units="arcsec",
                description="median astrometric RMS over CCDs",
            ),
        ]
        status = "fail" if "fail" in results else "warn" if "warn" in results else "pass"
        with ctx.registry.session() as s:
            s.get(Mosaic, red.id).qc_status = status
        ctx.output = {**(ctx.output or {}), **metrics, "qc_status": status}


def _mosaic_metrics(images: list[Image], exptime: float | None) -> dict[str, Any]:
    """Mosaic-level figures: medians over its reduced CCDs (sky background in e-/s/pixel)."""

    def med(attr: str) -> float | None:
        vals = [getattr(i, attr) for i in images if getattr(i, attr) is not None]
        return float(np.median(vals)) if vals else None

    astro_ok = [i for i in images if i.astro_rms is not None]
    sky = med("bkg_mean")
    return {
        "mean_psf_fwhm": med("psf_fwhm"),
        "zp_nightly": med("zp_nightly"),
        "transparency": med("transparency"),
        "sky_background": sky / exptime if sky is not None and exptime else None,
        "astro_rms": med("astro_rms"),
        "astro_nstars": int(sum(i.astro_nstars or 0 for i in images)),
        "astro_status": "ok" if len(astro_ok) == len(images) and images else "partial",
        "photo_status": "ok" if all(i.zp_nightly is not None for i in images) else "partial",
    }


@register_task
class SingleEpochCCD(Task):
    """Detrend, clean, extract, calibrate and record one CCD of a science mosaic."""

    name = "single_epoch_ccd"
    description = "single-epoch reduction of one CCD"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        cfg = ctx.config
        ccd_num = int(cfg["ccd_num"])
        settings = load_settings()
        archive = Archive(settings.archive_root)
        refcat_name = cfg.get("refcat", "pixelsim")
        with ctx.registry.session(write=False) as s:
            raw = s.get(Mosaic, cfg["mosaic_id"])
            obs = raw.obs_set
            instrument = load_instrument(raw.instrument or obs.instrument)
            raw_path = archive.abspath(raw.archive_file.path)
            when = _when(raw)
            bias = _calibration_file(s, best_calibration(s, "master_bias", instrument.name, when))
            flat = _calibration_file(
                s,
                best_calibration(
                    s, "master_flat", instrument.name, when, filter_tray=raw.filter_tray
                ),
            )
            fringe = _calibration_file(
                s,
                best_calibration(
                    s, "master_fringe", instrument.name, when, filter_tray=raw.filter_tray
                ),
            )
            refcat = s.scalar(select(RefCat).where(RefCat.name == refcat_name))
            raw_file_id, raw_id, obs_name = raw.archive_file_id, raw.id, obs.obs_set
            exptime, airmass = raw.exptime or 0.0, raw.airmass or 1.0
            ra0, dec0, tray = raw.ra, raw.dec, raw.filter_tray
            mjd = raw.mjd_obs
        if flat is None:
            raise QualityFailure(
                f"no valid master flat for tray {tray} within the search window: "
                "observe flats or reduce a night that has them"
            )
        if bias is None:
            raise QualityFailure("no valid master bias within the search window")
        if refcat is None:
            raise QualityFailure(f"reference catalog {refcat_name!r} is not loaded")
        ccd = instrument.ccd(ccd_num)
        band = instrument.filter(instrument.tray(tray).filters[ccd_num])
        try:
            _, amps = read_raw_ccd(raw_path, instrument, ccd_num)
        except RawFileError as exc:
            raise QualityFailure(str(exc)) from exc
        fringe_image = None
        if band.fringing:
            try:
                fringe_image = (
                    read_ccd_image(archive.abspath(fringe[1]), ccd_num) if fringe else None
                )
            except RawFileError:
                fringe_image = None
            ctx.qc(
                "fringe_corrected",
                1.0 if fringe_image is not None else 0.0,
                warn_min=1.0,
                description=f"{band.name} needs a fringe correction",
                reference=f"master fringe of {fringe[3]}" if fringe_image is not None else None,
            )
        wcs0 = ccd_wcs(instrument, ccd_num, ra0, dec0, distortion=False)
        ny, nx = ccd.shape
        cra, cdec = wcs0.all_pix2world([[nx / 2, ny / 2]], 0)[0]
        radius = np.hypot(nx, ny) / 2 * instrument.pixel_scale_arcsec / 3600 + 0.05
        epoch = 2000.0 + ((mjd or 51544.5) - 51544.5) / 365.25
        reference = query_refcat(
            ctx.registry, refcat_name, cra, cdec, radius, band.name, epoch=epoch
        )
        se_cfg = SingleEpochConfig(
            **{
                k: v
                for k, v in cfg.get("single_epoch", {}).items()
                if k in {f.name for f in dataclasses.fields(SingleEpochConfig)}
            }
        )
        result = reduce_ccd(
            amps,
            ccd,
            band,
            exptime=exptime,
            airmass=airmass,
            pixel_scale=instrument.pixel_scale_arcsec,
            initial_wcs=wcs0,
            reference=reference,
            bias=read_ccd_image(archive.abspath(bias[1]), ccd_num),
            flat=read_ccd_image(archive.abspath(flat[1]), ccd_num),
            fringe=fringe_image,
            config=se_cfg,
        )
        m = result.metrics
        qc = _ccd_qc(ctx, m)
        stored = _write_reduced(archive, settings.release, obs_name, raw, ccd_num, result, band)
        cat = result.catalog
        footprint = result.wcs.calc_footprint(axes=(nx, ny))
        center = result.wcs.all_pix2world([[nx / 2, ny / 2]], 0)[0]
        det_rows = _detection_rows(cat, band.name, ctx.production_id, instrument.pixel_scale_arcsec)

        def record(session: Session) -> None:
            files = {kind: _record_file(session, st) for kind, st in stored.items()}
            raw_prod = raw_product(session, raw_file_id, {"mosaic_id": raw_id})
            inputs = {
                "raw": [raw_prod.id],
                "bias": [bias[2]],
                "flat": [flat[2]],
                "refcat": [refcat.product_id] if refcat.product_id else [],
            }
            products = {
                kind: add_product(
                    session,
                    f"reduced_{kind}",
                    data_id={
                        "obs_set": obs_name,
                        "mosaic_id": raw_id,
                        "ccd": ccd_num,
                        "filter": band.name,
                    },
                    production_id=ctx.production_id,
                    job_id=ctx.job_id,
                    file_id=f.id,
                    inputs=inputs,
                    quality="bad" if "fail" in qc else "ok",
                )
                for kind, f in files.items()
            }
            image = Image(
                mosaic_id=cfg["reduced_mosaic_id"],
                ccd_num=ccd_num,
                filter=band.name,
                waveband=band.kind,
                wavelength=band.wavelength_nm,
                naxis1=nx,
                naxis2=ny,
                ra_min=float(footprint[:, 0].min()),
                ra_max=float(footprint[:, 0].max()),
                dec_min=float(footprint[:, 1].min()),
                dec_max=float(footprint[:, 1].max()),
                healpix=int(healpix_index(center[0], center[1])),
                rdnoise=float(np.mean(list(m["read_noise"].values()))),
                gain=1.0,
                psf_fwhm=m["psf_fwhm"],
                bkg_mean=m["bkg_mean"] * exptime if m["bkg_mean"] is not None else None,
                bkg_std=m["bkg_std"],
                n_extracted=m["n_extracted"],
                zp_nightly=m.get("zp"),
                zp_nightly_err=m.get("zp_err"),
                zp_nightly_stars=m.get("zp_stars"),
                transparency=m.get("transparency"),
                astro_rms=m["astro_rms"],
                astro_nstars=m["astro_nstars"],
                cosmic_ratio=m["cosmic_ratio"],
                saturate_ratio=m["saturate_ratio"],
                product_id=products["sci"].id,
            )
            session.add(image)
            session.flush()
            if m.get("zp") is not None:
                session.add(
                    ImageZeroPoint(
                        image_id=image.id,
                        production_id=ctx.production_id,
                        calib_method="refcat-aperture",
                        refcat=refcat_name,
                        zp=m["zp"],
                        zp_error=m["zp_err"],
                        n_stars=m["zp_stars"],
                        transparency=m.get("transparency"),
                    )
                )
            if det_rows:
                for row in det_rows:
                    row["image_id"] = image.id
                session.execute(Detection.__table__.insert(), det_rows)

        ctx.on_commit(record)
        return {k: v for k, v in m.items() if isinstance(v, (int, float, str)) or v is None} | {
            "files": [st.path for st in stored.values()],
            "qc": qc,
        }


def _ccd_qc(ctx: JobContext, m: dict[str, Any]) -> list[str]:
    lim = QC_LIMITS
    results = [
        ctx.qc(
            "psf_fwhm",
            m["psf_fwhm"],
            max=lim["psf_fwhm"][1],
            warn_max=lim["psf_fwhm"][3],
            units="arcsec",
            description="PSF FWHM of bright unsaturated stars",
        ),
        ctx.qc(
            "astro_nstars",
            m["astro_nstars"],
            min=lim["astro_nstars"][0],
            warn_min=lim["astro_nstars"][2],
            description="reference stars matched",
        ),
        ctx.qc(
            "astro_rms",
            m["astro_rms"],
            max=lim["astro_rms"][1],
            warn_max=lim["astro_rms"][3],
            units="arcsec",
            description="astrometric RMS against the reference catalog",
        ),
    ]
    if m["astro_status"] != "ok":
        ctx.log(f"astrometry: {m['astro_status']} ({m['astro_nstars']} matches)")
    if m.get("zp") is not None:
        results += [
            ctx.qc(
                "zp_err",
                m["zp_err"],
                max=lim["zp_err"][1],
                warn_max=lim["zp_err"][3],
                units="mag",
                description="zero-point uncertainty",
            ),
            ctx.qc(
                "transparency",
                m["transparency"],
                min=lim["transparency"][0],
                max=lim["transparency"][1],
                warn_min=lim["transparency"][2],
                description="measured / nominal flux at this airmass",
            ),
        ]
    else:
        results.append(ctx.qc("zp_measured", 0.0, min=1.0, description="zero-point measured"))
    return results


def _write_reduced(archive, release, obs_name, raw, ccd_num, result, band):  # noqa: ANN001, ANN202
    """Write the science, weight and mask files of one reduced CCD; returns StoredFile by kind."""
    stem = Path(raw.filename).stem
    header = result.wcs.to_header(relax=True)
    meta = {
        "OBSSET": obs_name,
        "CCDNUM": ccd_num,
        "FILTER": band.name,
        "EXPTIME": raw.exptime,
        "MJD-OBS": raw.mjd_obs,
        "AIRMASS": raw.airmass,
        "BUNIT": "electron",
        "MAGZERO": result.metrics.get("zp"),
        "SEEING": result.metrics.get("psf_fwhm"),
    }
    for key, value in meta.items():
        if value is not None and not (isinstance(value, float) and not np.isfinite(value)):
            header[key] = value
    stored = {}
    for kind, data in (("sci", result.science), ("wht", result.weight), ("msk", result.mask)):
        rel = archive.red_path(release, obs_name, f"{stem}.{ccd_extname(ccd_num)}.{kind}.fits")
        stored[kind] = archive.write_product(rel, lambda p, d=data: write_image(p, d, header))
    return stored


#: detection column <- catalog column, for the nullable float measurements.
_DETECTION_FLOATS = {
    "flux_auto": "flux_auto",
    "flux_err_auto": "flux_err_auto",
    "flux_psf": "flux_psf",
    "flux_err_psf": "flux_err_psf",
    "flux_aper": "flux_aper",
    "flux_err_aper": "flux_err_aper",
    "mag": "mag",
    "mag_err": "mag_err",
    "background": "background",
    "elongation": "elongation",
    "class_star": "class_star",
    "snr": "snr",
}


def _detection_rows(
    cat, band: str, production_id: int | None, pixel_scale: float
) -> list[dict[str, Any]]:  # noqa: ANN001
    """Detection table rows of a catalog (NaN -> NULL; FWHM converted to arcsec)."""
    if not len(cat):
        return []
    hp = healpix_index(np.asarray(cat["ra"]), np.asarray(cat["dec"]))
    cols = {
        name: np.asarray(cat[src], float)
        for name, src in _DETECTION_FLOATS.items()
        if src in cat.colnames
    }
    fwhm = np.asarray(cat["fwhm"], float) * pixel_scale
    x, y = np.asarray(cat["x"], float), np.asarray(cat["y"], float)
    ra, dec = np.asarray(cat["ra"], float), np.asarray(cat["dec"], float)
    flags = np.asarray(cat["flags"], int)
    rows = []
    for i in range(len(cat)):
        row = {name: _finite(arr, i) for name, arr in cols.items()}
        row.update(
            production_id=production_id,
            band=band,
            x=float(x[i]),
            y=float(y[i]),
            ra=float(ra[i]),
            dec=float(dec[i]),
            healpix=int(hp[i]),
            fwhm=_finite(fwhm, i),
            flags=int(flags[i]),
        )
        rows.append(row)
    return rows


def _finite(arr: np.ndarray | None, i: int) -> float | None:
    if arr is None or not np.isfinite(arr[i]):
        return None
    return float(arr[i])
