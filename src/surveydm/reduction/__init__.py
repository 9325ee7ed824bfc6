"""Pixel and catalog algorithms: pure functions on numpy arrays (no database, no files).

Detrending (this part): :func:`assemble_ccd` (overscan, trim, crosstalk, non-linearity, gain,
and the master bias, dark and flat when given, in one compiled pass), :func:`combine`
(bounded-memory sigma-clipped stacking), :func:`master_bias` / :func:`master_flat`,
:func:`detrend` (bias, dark, flat, fringe), :func:`find_cosmic_rays`, :func:`build_mask` with
:class:`MaskBit` codes, and :func:`weight_map`. See docs/reduction-detrending.md.

Catalogs (imported from their packages, each function the list of its steps and configured by
one frozen dataclass): :mod:`surveydm.reduction.extraction` (``extract_sources``,
``ExtractionConfig``), :mod:`surveydm.reduction.psf`, :mod:`surveydm.reduction.astrometry`
(``solve_astrometry``, ``AstrometryConfig``) and :mod:`surveydm.reduction.photometry`. See
docs/reduction-catalogs.md.
"""

from surveydm.reduction.assemble import AssembledCCD, assemble_ccd
from surveydm.reduction.calibration_frames import (
    CalibrationError,
    MasterFrame,
    bias_qc,
    flat_qc,
    master_bias,
    master_dark,
    master_flat,
)
from surveydm.reduction.combine import CombineResult, combine
from surveydm.reduction.cosmics import find_cosmic_rays
from surveydm.reduction.crosstalk import correct_crosstalk
from surveydm.reduction.detrend import detrend
from surveydm.reduction.fringe import fit_fringe_scale, make_fringe_frame, subtract_fringe
from surveydm.reduction.linearity import correct_nonlinearity
from surveydm.reduction.masks import (
    MaskBit,
    bad_pixels_from_flat,
    bleed_trails,
    build_mask,
    edge_mask,
)
from surveydm.reduction.overscan import RawGeometryError, overscan_correct
from surveydm.reduction.weights import variance_map, weight_map

__all__ = [
    "AssembledCCD",
    "CalibrationError",
    "CombineResult",
    "MaskBit",
    "MasterFrame",
    "RawGeometryError",
    "assemble_ccd",
    "bad_pixels_from_flat",
    "bias_qc",
    "bleed_trails",
    "build_mask",
    "combine",
    "correct_crosstalk",
    "correct_nonlinearity",
    "detrend",
    "edge_mask",
    "find_cosmic_rays",
    "fit_fringe_scale",
    "flat_qc",
    "make_fringe_frame",
    "master_bias",
    "master_dark",
    "master_flat",
    "overscan_correct",
    "subtract_fringe",
    "variance_map",
    "weight_map",
]
