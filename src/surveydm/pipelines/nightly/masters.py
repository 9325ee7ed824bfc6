"""Master calibrations in the task shape: master bias and master flat, and the base class they
share with the master fringe (:mod:`surveydm.pipelines.nightly.fringe`).

:class:`MasterCalibrationTask` is the one I/O step of every master: it resolves the declared
raw inputs and calibrations of its quantum (an observation set, and a filter tray), reads one
CCD of every exposure at a time, hands the arrays to the task's pure steps (``prepare`` one
frame, ``combine`` the stack: :mod:`surveydm.reduction` functions), and publishes the master
with its ``calibration_frame`` row, lineage and QC through
:func:`~surveydm.pipelines.base.recording.publish`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
from sqlalchemy.orm import Session

from surveydm.archive import Archive
from surveydm.db.models.calibration import CalibrationFrame
from surveydm.db.models.production import Product
from surveydm.instruments import CCD, Instrument
from surveydm.orchestration import JobContext, QualityFailure, Task, register_task
from surveydm.orchestration.qc import QCResult
from surveydm.pipelines.base.connections import (
    CalibrationInput,
    Output,
    RawFrame,
    RawInput,
    archive,
    lookup_calibrations,
    obs_set,
    raw_frames,
)
from surveydm.pipelines.base.recording import (
    Check,
    Lineage,
    OutputFile,
    RowsWriter,
    publish,
    record_checks,
)
from surveydm.pipelines.calibrations import CalibrationRef, find_calibration, night_window
from surveydm.pipelines.fitsio import RawFileError, read_ccd_image, read_raw_ccd, write_ccd_mosaic
from surveydm.pipelines.instrument_versions import obs_set_instrument
from surveydm.pipelines.nightly.qc import bias_checks, flat_checks
from surveydm.pipelines.productions import job_release
from surveydm.reduction.assemble import assemble_ccd
from surveydm.reduction.calibration_frames import flat_qc, master_bias, master_flat

#: Master bias, as master flats and fringe frames declare it.
BIAS = CalibrationInput("master_bias", "bias")
#: Master flat of the quantum's filter tray.
FLAT = CalibrationInput("master_flat", "flat", ("instrument", "filter_tray"))


@dataclass
class MasterQuantum:
    """What one master calibration job works on, read from the registry.

    Attributes:
        data_id: ``obs_set``, ``instrument``, ``night`` (YYYY-MM-DD), ``filter_tray``.
        obs_set_id: ``obs_set.id``; instrument: its description.
        inputs: the raw exposures to combine; calibrations: chosen frames by role.
    """

    data_id: dict[str, Any]
    obs_set_id: int
    instrument: Instrument
    inputs: list[RawFrame]
    calibrations: dict[str, CalibrationRef | None]


@dataclass
class MasterCCDs:
    """The combined master, one image per CCD, and the exposures that went into it."""

    images: dict[int, np.ndarray] = field(default_factory=dict)
    stats: dict[int, dict[str, float]] = field(default_factory=dict)
    used: list[RawFrame] = field(default_factory=list)


class MasterCalibrationTask(Task):
    """The I/O step shared by master calibrations (Rubin ``runQuantum``); subclasses declare
    their connections and implement the pure steps :meth:`prepare` and :meth:`combine`.

    Attributes:
        raw_input: the exposures combined; calibrations: masters they are detrended with;
        output: the product made (its type is also the ``calibration_frame.kind``);
        min_frames: fewest readable exposures per CCD; skip_short_ccds: a CCD with fewer is
        left out (True) or fails the job (False).
    """

    raw_input: ClassVar[RawInput]
    calibrations: ClassVar[tuple[CalibrationInput, ...]] = ()
    output: ClassVar[Output]
    min_frames: ClassVar[int] = 1
    skip_short_ccds: ClassVar[bool] = False

    # -- pure steps ------------------------------------------------------------------------
    def prepare(
        self, amps: dict[int, np.ndarray], ccd: CCD, calib: dict[str, np.ndarray]
    ) -> np.ndarray:
        """One exposure's CCD ready to combine: (ny, nx) float32, e-."""
        raise NotImplementedError

    def combine(
        self, frames: list[np.ndarray], calib: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, float]]:
        """The master of one CCD: ``(image, stats)``."""
        raise NotImplementedError

    def checks(self, ctx: JobContext, q: MasterQuantum, made: MasterCCDs) -> list[Check]:
        """QC checks of the master (may read earlier masters for comparison)."""
        return []

    def ccds(self, q: MasterQuantum) -> list[int]:
        """The CCDs to combine (default: all)."""
        return [c.num for c in q.instrument.ccds]

    def frame_stats(self, made: MasterCCDs) -> dict[str, Any]:
        """``calibration_frame.stats``: the QC figures per CCD (NaN as null: JSON has no NaN)."""
        return {str(k): _json_number(v) for k, v in made.stats.items()}

    # -- I/O -------------------------------------------------------------------------------
    def run(self, ctx: JobContext) -> dict[str, Any]:
        store = archive()
        q = self.quantum(ctx, store)
        why = self.cannot_make(ctx, q)
        if why:
            return {"made": False, "reason": why}
        made = self.make(ctx, store, q)
        if not made.images:  # every CCD skipped (skip_short_ccds)
            record_checks(ctx, self.checks(ctx, q, made))
            return {"made": False, "reason": "too few readable exposures"}
        out = self.output.data_id(q.data_id)
        path = store.red_path(
            job_release(ctx),
            q.data_id["obs_set"],
            ".".join([self.output.product_type, *(str(v) for v in out.values() if v)]) + ".fits",
        )
        header = {
            "OBSTYPE": self.output.product_type.upper(),
            "INSTRUME": q.instrument.name,
            "OBSSET": q.data_id["obs_set"],
            "FILTRAY": q.data_id.get("filter_tray"),
            "NCOMBINE": len(made.used),
            "PRODID": ctx.production_id,
        }
        refs = {r: [c.product_id] for r, c in q.calibrations.items() if c is not None}
        published = publish(
            ctx,
            store,
            [OutputFile(self.output, out, path,
                        lambda p: write_ccd_mosaic(p, made.images, header=header))],
            Lineage(made.used, refs),
            self.checks(ctx, q, made),
            rows=self._frame_row(q, made),
        )  # fmt: skip
        return {
            "made": True,
            "file": published.paths[0],
            "n_input": len(made.used),
            "ccds": sorted(made.images),
            "quality": published.quality,
        }

    def quantum(self, ctx: JobContext, store: Archive) -> MasterQuantum:
        """Resolve the declared inputs and calibrations of this job in the registry."""
        with ctx.registry.session(write=False) as s:
            obs = obs_set(s, ctx.config["obs_set"])
            data_id = {
                "obs_set": obs.obs_set,
                "instrument": obs_set_instrument(s, obs).name,
                "night": obs.night.isoformat(),
                "filter_tray": ctx.config.get("filter_tray"),
            }
            inputs = raw_frames(s, store, self.raw_input, data_id)
            when = inputs[0].when if inputs else None
            calibs = lookup_calibrations(s, self.calibrations, data_id, when)
            instrument = obs_set_instrument(s, obs)
        return MasterQuantum(data_id, obs.id, instrument, inputs, calibs)

    def cannot_make(self, ctx: JobContext, q: MasterQuantum) -> str | None:
        """Why no master can be made (the job then ends done without one), or None.

        Raises:
            QualityFailure: no input exposure at all.
        """
        if not q.inputs:
            raise QualityFailure(
                f"no {self.output.product_type} input frames in {q.data_id['obs_set']}"
            )
        return None

    def make(self, ctx: JobContext, store: Archive, q: MasterQuantum) -> MasterCCDs:
        """Read every CCD of every exposure (one CCD at a time) and combine it; an unreadable
        exposure is logged and left out of every CCD.

        Raises:
            QualityFailure: a CCD has fewer than ``min_frames`` readable exposures (unless
                ``skip_short_ccds``).
        """
        made, bad = MasterCCDs(), set()
        for num in self.ccds(q):
            calib = {
                role: read_ccd_image(store.abspath(ref.path), num)
                for role, ref in q.calibrations.items()
                if ref is not None
            }
            frames = []
            for f in q.inputs:
                if f.mosaic_id in bad:
                    continue
                try:
                    raw = read_raw_ccd(f.path, q.instrument, num)
                    frames.append(self.prepare(raw.amps, raw.ccd, calib))
                except (RawFileError, ValueError) as exc:
                    ctx.log(f"{f.filename}: skipped ({exc})")
                    bad.add(f.mosaic_id)
            if len(frames) < self.min_frames:
                if self.skip_short_ccds:
                    continue
                raise QualityFailure(f"no readable {self.output.product_type} frames for CCD {num}")
            made.images[num], made.stats[num] = self.combine(frames, calib)
        made.used = [f for f in q.inputs if f.mosaic_id not in bad]
        return made

    def _frame_row(self, q: MasterQuantum, made: MasterCCDs) -> RowsWriter:
        """The ``calibration_frame`` row recorded with the master's product."""
        valid_from, valid_until = night_window(q.data_id["night"])

        def rows(session: Session, products: dict[str, Product], quality: QCResult) -> None:
            session.add(
                CalibrationFrame(
                    kind=self.output.product_type,
                    instrument=q.instrument.name,
                    filter_tray=q.data_id.get("filter_tray"),
                    night=q.data_id["night"],
                    obs_set_id=q.obs_set_id,
                    valid_from=valid_from,
                    valid_until=valid_until,
                    n_input=len(made.used),
                    stats=self.frame_stats(made),
                    product_id=products[self.output.product_type].id,
                )
            )

        return rows


def _combined(result: Any) -> tuple[np.ndarray, dict[str, float]]:
    """(image, stats as floats) of a :class:`~surveydm.reduction.calibration_frames.MasterFrame`."""
    return result.image, {k: float(v) for k, v in result.stats.items()}


@register_task
class MasterBias(MasterCalibrationTask):
    """Overscan-corrected, sigma-clipped combination of the night's biases, per CCD."""

    name = "master_bias"
    description = "master bias of an observation set"
    raw_input = RawInput("bias")
    output = Output("master_bias", ("obs_set",))

    def prepare(
        self, amps: dict[int, np.ndarray], ccd: CCD, calib: dict[str, np.ndarray]
    ) -> np.ndarray:
        return assemble_ccd(amps, ccd).image

    def combine(
        self, frames: list[np.ndarray], calib: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, float]]:
        return _combined(master_bias(frames))

    def checks(self, ctx: JobContext, q: MasterQuantum, made: MasterCCDs) -> list[Check]:
        return bias_checks(made.stats)


@register_task
class MasterFlat(MasterCalibrationTask):
    """Bias-subtracted, normalised flats of one filter tray combined with rejection."""

    name = "master_flat"
    description = "master flat of one filter tray"
    raw_input = RawInput("flat", ("obs_set", "filter_tray"))
    calibrations = (BIAS,)
    output = Output("master_flat", ("obs_set", "filter_tray"))

    def cannot_make(self, ctx: JobContext, q: MasterQuantum) -> str | None:
        if q.inputs and q.calibrations["bias"] is None:
            ctx.log("no valid master bias: flats are combined without bias subtraction")
        return super().cannot_make(ctx, q)

    def prepare(
        self, amps: dict[int, np.ndarray], ccd: CCD, calib: dict[str, np.ndarray]
    ) -> np.ndarray:
        img = assemble_ccd(amps, ccd).image
        if "bias" in calib:
            img -= calib["bias"]
        return img

    def combine(
        self, frames: list[np.ndarray], calib: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, float]]:
        return _combined(master_flat(frames))

    def checks(self, ctx: JobContext, q: MasterQuantum, made: MasterCCDs) -> list[Check]:
        previous = _previous_flat(ctx, q)
        if previous is None:
            ctx.log("no previous master flat of this tray: stability not measured")
            return flat_checks(made.stats, None, None)
        store = archive()
        stability = [
            flat_qc(image, previous=read_ccd_image(store.abspath(previous.path), num))[
                "stability_rms"
            ]
            for num, image in made.images.items()
        ]
        return flat_checks(made.stats, stability, previous.night)


def _previous_flat(ctx: JobContext, q: MasterQuantum) -> CalibrationRef | None:
    """The valid master flat of the same tray before this night (within a year), or None."""
    night_start, _ = night_window(q.data_id["night"])
    with ctx.registry.session(write=False) as s:
        return find_calibration(
            s,
            "master_flat",
            q.instrument.name,
            night_start - timedelta(seconds=1),
            filter_tray=q.data_id["filter_tray"],
            max_days=365,
        )


def _json_number(value: Any) -> Any:
    """``value`` with every non-finite float (nested in dicts) replaced by None."""
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__: Sequence[str] = ("BIAS", "FLAT", "MasterBias", "MasterCalibrationTask", "MasterFlat")
