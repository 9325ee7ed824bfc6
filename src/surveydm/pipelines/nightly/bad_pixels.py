"""The ``bad_pixel_mask`` task: one bad-pixel mask per CCD from the night's closed-shutter darks
(``dark`` and ``test`` exposures) and master flats (seed 002: "Compile Bad Pixel Masks"),
recorded as a calibration frame with the night's validity range like the master bias and flats,
so that single epochs look it up by time (:mod:`surveydm.pipelines.calibrations`).

The science is :func:`surveydm.reduction.bad_pixel_mask.bad_pixel_mask`; this module is its I/O
step in the shape of the other masters
(:class:`~surveydm.pipelines.nightly.masters.MasterCalibrationTask`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from surveydm.archive import Archive
from surveydm.db.models.raw import Mosaic
from surveydm.orchestration import JobContext, register_task
from surveydm.pipelines.base.connections import (
    Output,
    RawFrame,
    RawInput,
    lookup_calibrations,
    mosaics,
    raw_frames,
)
from surveydm.pipelines.base.recording import Check
from surveydm.pipelines.calibrations import find_calibration, night_window
from surveydm.pipelines.fitsio import RawFileError, read_ccd_image, read_raw_ccd
from surveydm.pipelines.nightly.masters import (
    BIAS,
    MasterCalibrationTask,
    MasterCCDs,
    MasterQuantum,
)
from surveydm.pipelines.nightly.plan import DARK_KINDS
from surveydm.pipelines.nightly.qc import bad_pixel_checks
from surveydm.reduction.assemble import assemble_ccd
from surveydm.reduction.bad_pixel_mask import bad_pixel_mask

#: Lineage role prefix of the master flats a mask is built from (``flat:<tray>``).
FLAT_ROLE = "flat:"


@dataclass
class BadPixelQuantum(MasterQuantum):
    """A master quantum with the darks' exposure times (s) by ``mosaic_id``."""

    exptimes: dict[int, float] = field(default_factory=dict)


@register_task
class BadPixelMaskTask(MasterCalibrationTask):
    """Bad-pixel masks of every CCD from the night's darks and master flats."""

    name = "bad_pixel_mask"
    description = "bad-pixel masks from the night's darks and flats"
    raw_input = RawInput("test")
    calibrations = (BIAS,)
    output = Output("bad_pixel_mask", ("obs_set",))

    def quantum(self, ctx: JobContext, store: Archive) -> BadPixelQuantum:
        """The night's darks (``dark`` and ``test`` exposures with a positive exposure time),
        the master bias at their time, and the master flats of every tray flat-fielded
        tonight."""
        q = super().quantum(ctx, store)
        night_start, _ = night_window(q.data_id["night"])
        with ctx.registry.session(write=False) as s:
            frames = [
                f for kind in DARK_KINDS for f in raw_frames(s, store, RawInput(kind), q.data_id)
            ]
            exptimes = {f.mosaic_id: s.get(Mosaic, f.mosaic_id).exptime or 0.0 for f in frames}
            darks = [f for f in frames if exptimes[f.mosaic_id] > 0]
            trays = sorted(
                {m.filter_tray for m in mosaics(s, q.obs_set_id, "flat") if m.filter_tray}
            )
            when = darks[0].when if darks else night_start + timedelta(hours=12)
            calibs = lookup_calibrations(s, self.calibrations, q.data_id, when)
            for tray in trays:
                calibs[FLAT_ROLE + tray] = find_calibration(
                    s,
                    "master_flat",
                    q.instrument.name,
                    night_start + timedelta(hours=12),
                    filter_tray=tray,
                    max_days=0,
                )
        return BadPixelQuantum(
            q.data_id, q.obs_set_id, q.instrument, darks, calibs, exptimes=exptimes
        )

    def cannot_make(self, ctx: JobContext, q: MasterQuantum) -> str | None:
        flats = [r for k, r in q.calibrations.items() if k.startswith(FLAT_ROLE) and r]
        if not flats and (not q.inputs or q.calibrations.get("bias") is None):
            why = "no darks with a master bias and no master flats tonight"
            ctx.log(f"no bad-pixel mask made ({why}); single epochs use another night's")
            return why
        if q.inputs and q.calibrations.get("bias") is None:
            ctx.log("no valid master bias: hot pixels are not searched, flats only")
        elif not q.inputs:
            ctx.log("no darks tonight: hot pixels are not searched, flats only")
        return None

    def make(self, ctx: JobContext, store: Archive, q: BadPixelQuantum) -> MasterCCDs:
        """Read the darks and flats one CCD at a time and build its mask; an unreadable dark is
        logged and left out of every CCD."""
        made, bad = MasterCCDs(), set()
        bias_ref = q.calibrations.get("bias")
        flat_refs = [r for k, r in q.calibrations.items() if k.startswith(FLAT_ROLE) and r]
        darks_used: list[RawFrame] = q.inputs if bias_ref is not None else []
        for ccd in q.instrument.ccds:
            bias = read_ccd_image(store.abspath(bias_ref.path), ccd.num) if bias_ref else None
            flats = [read_ccd_image(store.abspath(r.path), ccd.num) for r in flat_refs]
            darks, times = [], []
            for f in darks_used:
                if f.mosaic_id in bad:
                    continue
                try:
                    raw = read_raw_ccd(f.path, q.instrument, ccd.num)
                    darks.append(assemble_ccd(raw.amps, raw.ccd).image)
                    times.append(q.exptimes[f.mosaic_id])
                except (RawFileError, ValueError) as exc:
                    ctx.log(f"{f.filename}: skipped ({exc})")
                    bad.add(f.mosaic_id)
            if not darks and not flats:
                continue
            bpm = bad_pixel_mask(darks, times, bias=bias, flats=flats)
            made.images[ccd.num] = bpm.mask
            made.stats[ccd.num] = bpm.stats
        made.used = [f for f in darks_used if f.mosaic_id not in bad]
        return made

    def checks(self, ctx: JobContext, q: MasterQuantum, made: MasterCCDs) -> list[Check]:
        return bad_pixel_checks(made.stats)


__all__ = ["DARK_KINDS", "FLAT_ROLE", "BadPixelMaskTask", "BadPixelQuantum"]
