"""The solver's inputs: detections (positions, fluxes, flags) and reference stars (positions at
the observation epoch, magnitudes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from surveydm.reduction.astrometry.solution import AstrometryError

__all__ = [
    "ReferenceStars",
    "Sources",
    "apply_proper_motion",
    "observation_epoch",
    "read_reference",
    "read_sources",
]


def _decimal_year(epoch: Time | float | str | None) -> float | None:
    if epoch is None:
        return None
    if isinstance(epoch, Time):
        return float(epoch.jyear)
    if isinstance(epoch, str):
        return float(Time(epoch).jyear)
    return float(epoch)


def apply_proper_motion(
    reference: Table, epoch: Time | float | str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Reference positions at the observation epoch (linear proper motion on the sphere).

    Args:
        reference: table with ``ra, dec`` (deg) and optionally ``pmra`` (mas/yr, mu_alpha* =
            mu_alpha cos(dec), the Gaia convention), ``pmdec`` (mas/yr) and the catalog epoch
            (Julian year) as an ``epoch``/``ref_epoch`` column or an ``EPOCH``/``epoch``
            ``meta`` keyword (as FITS catalogs carry it); missing/NaN motions count as 0.
        epoch: observation epoch (Time, Julian year or ISO string); None leaves positions.

    Returns:
        (ra, dec) float64 arrays in degrees.
    """
    ra = np.asarray(reference["ra"], dtype=np.float64)
    dec = np.asarray(reference["dec"], dtype=np.float64)
    t_obs = _decimal_year(epoch)
    if t_obs is None or "pmra" not in reference.colnames or "pmdec" not in reference.colnames:
        return ra, dec
    col = next((c for c in ("epoch", "ref_epoch") if c in reference.colnames), None)
    meta_key = next((k for k in reference.meta if str(k).lower() in ("epoch", "ref_epoch")), None)
    if col is not None:
        t_ref = np.asarray(reference[col], dtype=np.float64)
    elif meta_key is not None:
        t_ref = np.full(len(ra), _decimal_year(reference.meta[meta_key]))
    else:
        return ra, dec
    dt = np.nan_to_num(t_obs - t_ref)
    pmra = np.nan_to_num(np.asarray(np.ma.filled(reference["pmra"], np.nan), dtype=np.float64))
    pmdec = np.nan_to_num(np.asarray(np.ma.filled(reference["pmdec"], np.nan), dtype=np.float64))
    dec_new = dec + pmdec * dt / 3.6e6
    cosd = np.maximum(np.cos(np.deg2rad(dec)), 1e-6)
    ra_new = (ra + pmra * dt / 3.6e6 / cosd) % 360.0
    return ra_new, dec_new


def _column(table: Table, names: tuple[str, ...], what: str) -> np.ndarray:
    for n in names:
        if n in table.colnames:
            return np.asarray(np.ma.filled(table[n], np.nan), dtype=np.float64)
    raise AstrometryError(f"{what} table needs one of the columns {', '.join(names)}")


@dataclass(frozen=True)
class Sources:
    """Detections of the CCD (arrays of length n).

    Attributes:
        x, y: 0-based pixel positions, float64.
        flux: flux used to rank them (any unit), float64.
        usable: int64 indices of the finite, positive-flux, unflagged sources, brightest first.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    usable: np.ndarray


@dataclass(frozen=True)
class ReferenceStars:
    """Reference stars at the observation epoch (arrays of length m).

    Attributes:
        ra, dec: positions, deg (proper motions applied).
        mag: magnitudes ranking them (zeros without a magnitude column).
    """

    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray


def read_sources(sources: Table, flux_column: str | None) -> Sources:
    """``x, y``, a flux (``flux_column``, else the first of ``flux``/``flux_auto``/
    ``flux_aper``) and ``flags`` (absent: 0) of ``sources``; AstrometryError if one is missing."""
    x = _column(sources, ("x",), "sources")
    y = _column(sources, ("y",), "sources")
    names = (flux_column,) if flux_column else ("flux", "flux_auto", "flux_aper")
    flux = _column(sources, names, "sources")
    flags = (
        np.asarray(sources["flags"], dtype=np.int64)
        if "flags" in sources.colnames
        else np.zeros(len(x), dtype=np.int64)
    )
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux) & (flux > 0) & (flags == 0)
    usable = np.nonzero(good)[0]
    usable = usable[np.argsort(-flux[usable], kind="stable")]
    return Sources(x=x, y=y, flux=flux, usable=usable)


def observation_epoch(
    epoch: Time | float | str | None, initial_wcs: WCS
) -> Time | float | str | None:
    """``epoch``, or when None the WCS ``MJD-OBS`` / ``DATE-OBS`` (None if neither is set)."""
    if epoch is None:
        if np.isfinite(initial_wcs.wcs.mjdobs):
            epoch = Time(initial_wcs.wcs.mjdobs, format="mjd")
        elif initial_wcs.wcs.dateobs:
            epoch = Time(initial_wcs.wcs.dateobs)
    return epoch


def read_reference(
    reference: Table, epoch: Time | float | str | None, mag_column: str
) -> ReferenceStars:
    """Reference positions at ``epoch`` (:func:`apply_proper_motion`) and magnitudes.

    Raises:
        AstrometryError: no ``ra``/``dec`` column, or a ``mag_column`` other than ``mag``
            that the table lacks.
    """
    for col in ("ra", "dec"):
        if col not in reference.colnames:
            raise AstrometryError(f"reference table needs an {col!r} column (deg)")
    ra, dec = apply_proper_motion(reference, epoch)
    if mag_column not in reference.colnames and mag_column != "mag":
        raise AstrometryError(f"reference table has no {mag_column!r} column")
    mag = (
        np.asarray(np.ma.filled(reference[mag_column], np.nan), dtype=np.float64)
        if mag_column in reference.colnames
        else np.zeros(len(ra))
    )
    return ReferenceStars(ra=ra, dec=dec, mag=mag)
