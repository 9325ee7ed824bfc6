"""The ``master_fringe`` task: fringe frames of a filter tray's fringing CCDs from the night's
science exposures, in the shape of the other masters
(:class:`~surveydm.pipelines.nightly.masters.MasterCalibrationTask`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from surveydm.instruments import CCD
from surveydm.orchestration import JobContext, register_task
from surveydm.pipelines.base.connections import Output, RawInput
from surveydm.pipelines.base.recording import Check, record_checks
from surveydm.pipelines.nightly.masters import (
    BIAS,
    FLAT,
    MasterCalibrationTask,
    MasterCCDs,
    MasterQuantum,
)
from surveydm.pipelines.nightly.plan import fringing_ccds
from surveydm.pipelines.nightly.qc import fringe_frames_check
from surveydm.reduction.assemble import assemble_ccd
from surveydm.reduction.fringe_frame import two_pass_fringe_frame


@register_task
class MasterFringe(MasterCalibrationTask):
    """Fringe frames of a filter tray's fringing CCDs from the night's science exposures.

    Each exposure is detrended (master bias and flat) and the dithered stack combined with its
    sources masked twice (:func:`surveydm.reduction.fringe_frame.two_pass_fringe_frame`; seed
    002, fringing correction of the reddest J-PLUS bands). Fewer than ``min_frames`` exposures,
    or no valid master bias or flat, make no frame: the single-epoch jobs then use the nearest
    valid master fringe of another night, or go without and say so in their QC.
    """

    name = "master_fringe"
    description = "master fringe frames of one filter tray"
    raw_input = RawInput("science", ("obs_set", "filter_tray"))
    calibrations = (BIAS, FLAT)
    output = Output("master_fringe", ("obs_set", "filter_tray"))
    min_frames = 2
    skip_short_ccds = True

    def ccds(self, q: MasterQuantum) -> list[int]:
        return fringing_ccds(q.instrument, q.data_id["filter_tray"])

    def cannot_make(self, ctx: JobContext, q: MasterQuantum) -> str | None:
        n = len(q.inputs)
        if n < self.min_frames:
            why = f"{n} science exposures in tray {q.data_id['filter_tray']}"
        elif q.calibrations["bias"] is None or q.calibrations["flat"] is None:
            why = "no valid master bias or flat"
        else:
            return None
        ctx.log(f"no fringe frame made tonight ({why}); single epochs use another night's")
        record_checks(ctx, [fringe_frames_check(n)])
        return why

    def prepare(
        self, amps: dict[int, np.ndarray], ccd: CCD, calib: dict[str, np.ndarray]
    ) -> np.ndarray:
        return assemble_ccd(amps, ccd, bias=calib["bias"], flat=calib["flat"]).image

    def combine(
        self, frames: list[np.ndarray], calib: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, float]]:
        return two_pass_fringe_frame(frames, ~(calib["flat"] > 0)), {}

    def checks(self, ctx: JobContext, q: MasterQuantum, made: MasterCCDs) -> list[Check]:
        return [fringe_frames_check(len(q.inputs))]

    def frame_stats(self, made: MasterCCDs) -> dict[str, Any]:
        return {"ccds": sorted(made.images)}
