"""Astrometric calibration of one CCD: reference-catalog matching and a TAN-SIP fit.

Starting from the header WCS guess (pointing errors up to ~1.5 arcmin, rotation up to ~1.5 deg),
the solver

1. projects the reference stars (proper motions applied to the observation epoch) onto the
   pixel grid with the guess WCS;
2. finds the rotation and offset with a coarse search: for each trial rotation about the CCD
   centre it histograms the offsets between all pairs of bright sources and bright reference
   stars and keeps the rotation whose offset histogram has the highest, significant peak
   (the "offset vote" of Pan-STARRS' psastro and of SCAMP's cross-correlation, Bertin 2006);
3. refines with iterative nearest-neighbour matching (scipy ``cKDTree``, one-to-one) and an
   affine fit in pixel space with a shrinking match radius;
4. fits the TAN-SIP WCS (Shupe et al. 2005 SIP convention) by linear least squares
   (:func:`fit_tan_sip`; ``fitter="astropy"`` uses ``astropy.wcs.utils.fit_wcs_from_points``
   instead), with sigma clipping of the 2-D residuals and re-matching on the sky.

A CCD with too few stars, or whose stars do not match the reference catalog, gives a solution
with status ``too_few_stars`` / ``no_match`` and the initial WCS, never an exception (seed 000:
the astro status of an image is a quality flag, not a crash).

The package, one step per module: :mod:`.catalogs` (inputs, proper motions),
:mod:`.projection` (step 1), :mod:`.matching` (steps 2-3), :mod:`.tan_sip` and
:mod:`.wcs_fit` (step 4 and the assessment), :mod:`.config` (:class:`AstrometryConfig`),
:mod:`.solution` (:class:`AstrometrySolution`) and :mod:`.solve` (:func:`solve_astrometry`,
the steps in order).
"""

from surveydm.reduction.astrometry.catalogs import apply_proper_motion
from surveydm.reduction.astrometry.config import AstrometryConfig
from surveydm.reduction.astrometry.solution import (
    STATUS_NO_MATCH,
    STATUS_OK,
    STATUS_TOO_FEW_STARS,
    AstrometryError,
    AstrometrySolution,
)
from surveydm.reduction.astrometry.solve import solve_astrometry
from surveydm.reduction.astrometry.tan_sip import fit_tan_sip

__all__ = [
    "STATUS_NO_MATCH",
    "STATUS_OK",
    "STATUS_TOO_FEW_STARS",
    "AstrometryConfig",
    "AstrometryError",
    "AstrometrySolution",
    "apply_proper_motion",
    "fit_tan_sip",
    "solve_astrometry",
]
