"""The nightly pipeline as job-system tasks (seed 000 section 6.1, figure 6).

Per observation set::

    register (prolog: one register_file sub-job per manifest file;
              epilog: creates the nightly job once every file is registered)
      nightly (prolog: master_bias, then one master_flat per filter tray after the bias,
               one master_fringe per fringing science tray after its flat, the
               bad_pixel_mask after the flats (darks + flats),
               then one single_epoch per science mosaic after the masters of its tray;
               epilog: sub-job counts)
        single_epoch (prolog: one single_epoch_ccd per CCD; epilog: mosaic metrics and QC)

Every task that makes products has the same shape (Rubin ``pipe_base``'s ``PipelineTask``):
it declares its inputs, calibrations and outputs by product type and data ID
(:mod:`~surveydm.pipelines.base.connections`); its science is a pure function of
:mod:`surveydm.reduction` (arrays in, typed dataclass out); its I/O step reads through the
registry and records product files, lineage and QC through one helper
(:func:`~surveydm.pipelines.base.recording.publish`) in the transaction that marks the job
done, so a re-run never duplicates them.

Modules: ``connections`` (declarations and registry look-ups), ``recording`` (the shared
publish helper), ``qc`` (named QC limits and checks), ``register_tasks``, ``plan`` (the
``nightly`` job), ``masters`` (master bias and flat, and the base of every master),
``fringe`` (master fringe), ``bad_pixels`` (bad-pixel masks), ``single_epoch`` (one
mosaic), ``single_epoch_ccd`` (one CCD) and ``ccd_products`` (the files and rows of a reduced
CCD).

Calibration frames are selected by validity range (:mod:`surveydm.pipelines.calibrations`), so
an exposure whose tray had no flats that night uses the nearest valid master flat of another
night, or its CCD jobs end with a quality failure saying why.
"""

from surveydm.pipelines.nightly.bad_pixels import BadPixelMaskTask
from surveydm.pipelines.nightly.fringe import MasterFringe
from surveydm.pipelines.nightly.masters import MasterBias, MasterCalibrationTask, MasterFlat
from surveydm.pipelines.nightly.plan import Nightly, fringing_ccds
from surveydm.pipelines.nightly.qc import QC_LIMITS, NightlyLimits
from surveydm.pipelines.nightly.register_tasks import RegisterFile, RegisterObsSet
from surveydm.pipelines.nightly.single_epoch import SingleEpoch, mosaic_metrics
from surveydm.pipelines.nightly.single_epoch_ccd import SingleEpochCCD

__all__ = [
    "QC_LIMITS",
    "BadPixelMaskTask",
    "MasterBias",
    "MasterCalibrationTask",
    "MasterFlat",
    "MasterFringe",
    "Nightly",
    "NightlyLimits",
    "RegisterFile",
    "RegisterObsSet",
    "SingleEpoch",
    "SingleEpochCCD",
    "fringing_ccds",
    "mosaic_metrics",
]
