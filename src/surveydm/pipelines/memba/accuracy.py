"""memba and association results against the simulator's truth (``objects.parquet``): per-band
co-added flux bias of bright stars, pull width, chi2 per degree of freedom, the star flux rms
across narrow bands, and association purity / completeness (benchmarks/accuracy_memba.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import chi2 as chi2_dist
from sqlalchemy import select

from surveydm.db import Registry
from surveydm.db.models.calibration import Detection
from surveydm.db.models.multiepoch import DvoMeasure, DvoObject, ForcedApertureCoadd
from surveydm.simulation.truth import read_objects


def _robust_width(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


@dataclass
class BandAccuracy:
    """One band: stars with S/N > ``snr_min``, their median flux bias (fraction), robust
    pull width, median chi2 per degree of freedom (sources with >= 2 epochs), and the median
    of chi2 over the chi-square distribution's median for each source's degrees of freedom
    (``chi2_norm``: 1 when the errors are right; chi2/dof itself has median 0.45 for one
    degree of freedom, 0.69 for two)."""

    band: str
    n_stars: int
    bias: float
    pull_width: float
    chi2_dof: float
    chi2_norm: float = float("nan")


@dataclass
class MembaAccuracy:
    """Per-band figures, the rms of measured/true flux of the stars' co-adds over all narrow
    bands (plain, robust: 1.4826 x MAD, the part the quoted errors explain:
    sqrt(mean((error / true)^2)), the excess over it: sqrt(rms^2 - noise^2), and the plain rms
    of those with S/N > 100), their count, and the pull width over all bands."""

    bands: list[BandAccuracy] = field(default_factory=list)
    narrow_rms: float = float("nan")
    narrow_robust_rms: float = float("nan")
    narrow_noise_rms: float = float("nan")
    narrow_excess_rms: float = float("nan")
    narrow_rms_snr100: float = float("nan")
    n_narrow: int = 0
    pull_width: float = float("nan")
    n_stars: int = 0


def memba_accuracy(
    registry: Registry, truth_dir: Path, production_id: int, snr_min: float = 50.0
) -> MembaAccuracy:
    """Compare the co-added fluxes of ``production_id`` with the truth's star magnitudes
    (``mag_<band>`` AB -> nJy). Reference ids are truth ids (the simulator's deep catalog)."""
    objects = read_objects(truth_dir)
    ids = np.asarray(objects["id"], np.int64)
    star = dict(zip(ids.tolist(), (np.asarray(objects["kind"]) == "star").tolist(), strict=True))
    pos = {int(i): k for k, i in enumerate(ids)}
    with registry.session(write=False) as s:
        rows = s.execute(
            select(ForcedApertureCoadd.ref_id, ForcedApertureCoadd.band, ForcedApertureCoadd.flux,
                   ForcedApertureCoadd.flux_error, ForcedApertureCoadd.chi2,
                   ForcedApertureCoadd.n_coadd)
            .where(ForcedApertureCoadd.production_id == production_id,
                   ForcedApertureCoadd.flux.is_not(None))
        ).all()  # fmt: skip
    out = MembaAccuracy()
    narrow_ratios, narrow_rel_err, pulls = [], [], []
    for band in sorted({r.band for r in rows}):
        col = f"mag_{band}"
        if col not in objects.colnames:
            continue
        mags = np.asarray(objects[col], float)
        sel = [r for r in rows if r.band == band and star.get(r.ref_id)
               and r.flux_error and r.flux / r.flux_error > snr_min]  # fmt: skip
        if not sel:
            continue
        true = np.array([10 ** (-0.4 * (mags[pos[r.ref_id]] - 31.4)) for r in sel])
        flux = np.array([r.flux for r in sel])
        err = np.array([r.flux_error for r in sel])
        multi = [r for r in sel if r.n_coadd > 1 and r.chi2 is not None]
        chi = np.array([r.chi2 / (r.n_coadd - 1) for r in multi])
        norm = np.array([r.chi2 / chi2_dist.median(r.n_coadd - 1) for r in multi])
        ratio = flux / true
        pull = (flux - true) / err
        pulls.append(pull)
        if band.startswith("NB"):
            narrow_ratios.append(ratio)
            narrow_rel_err.append(err / true)
        chi_med = float(np.median(chi)) if chi.size else float("nan")
        norm_med = float(np.median(norm)) if norm.size else float("nan")
        out.bands.append(
            BandAccuracy(band, len(sel), float(np.median(ratio) - 1), _robust_width(pull),
                         chi_med, norm_med)
        )  # fmt: skip
        out.n_stars += len(sel)
    if narrow_ratios:
        r, e = np.concatenate(narrow_ratios), np.concatenate(narrow_rel_err)
        out.n_narrow = len(r)
        out.narrow_rms = float(np.sqrt(np.mean((r - 1) ** 2)))
        out.narrow_robust_rms = _robust_width(r)
        out.narrow_noise_rms = float(np.sqrt(np.mean(e**2)))
        out.narrow_excess_rms = float(np.sqrt(max(out.narrow_rms**2 - out.narrow_noise_rms**2, 0)))
        bright = r / e > 100  # measured S/N: flux / error = (flux / true) / (error / true)
        if bright.any():
            out.narrow_rms_snr100 = float(np.sqrt(np.mean((r[bright] - 1) ** 2)))
    if pulls:
        out.pull_width = _robust_width(np.concatenate(pulls))
    return out


@dataclass
class AssociationAccuracy:
    """Purity (objects made of one true object's detections) and completeness (true objects
    whose detections are in one object) for isolated true objects with S/N > ``snr_min``."""

    n_objects: int
    n_detections: int
    purity: float
    completeness: float


def association_accuracy(
    registry: Registry,
    truth_dir: Path,
    production_id: int,
    snr_min: float = 10.0,
    match_arcsec: float = 1.0,
    isolation_arcsec: float = 5.0,
) -> AssociationAccuracy:
    """Match every associated detection to the nearest truth object (within ``match_arcsec``)
    and score the objects of ``production_id`` on isolated truth objects."""
    from scipy.spatial import cKDTree

    objects = read_objects(truth_dir)
    tra, tdec = np.asarray(objects["ra"], float), np.asarray(objects["dec"], float)
    dec0 = float(np.mean(tdec))
    txy = np.column_stack([tra * np.cos(np.radians(dec0)), tdec]) * 3600
    tree = cKDTree(txy)
    d2, _ = tree.query(txy, k=2)
    isolated = d2[:, 1] > isolation_arcsec
    with registry.session(write=False) as s:
        rows = s.execute(
            select(Detection.ra, Detection.dec, Detection.snr, DvoMeasure.object_id)
            .join(DvoMeasure, DvoMeasure.detection_id == Detection.id)
            .join(DvoObject, DvoObject.id == DvoMeasure.object_id)
            .where(DvoObject.production_id == production_id)
        ).all()  # fmt: skip
    if not rows:
        return AssociationAccuracy(0, 0, float("nan"), float("nan"))
    ra, dec, snr, obj = (np.array(c) for c in zip(*rows, strict=True))
    snr = np.array([np.nan if v is None else v for v in snr], float)
    xy = np.column_stack([ra.astype(float) * np.cos(np.radians(dec0)), dec.astype(float)]) * 3600
    dist, nearest = tree.query(xy)
    keep = (dist < match_arcsec) & isolated[nearest] & (snr > snr_min)
    obj, true = obj[keep].astype(np.int64), nearest[keep]
    pure = [len(np.unique(true[obj == k])) == 1 for k in np.unique(obj)]
    whole = [len(np.unique(obj[true == t])) == 1 for t in np.unique(true)]
    return AssociationAccuracy(len(np.unique(obj)), int(keep.sum()), float(np.mean(pure)),
                               float(np.mean(whole)))  # fmt: skip
