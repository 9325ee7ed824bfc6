"""Accuracy of a reduced night against the simulator's truth (issue 6's figures of merit).

Compares the registry's reduced CCDs and detections with ``<truth_dir>/objects.parquet`` and
``exposures.parquet`` written by :func:`surveydm.simulation.simulate_night`:

* astrometric RMS (arcsec): 2-D offsets of bright unsaturated isolated stars (S/N > 100,
  unflagged) from their true positions (moved to the exposure epoch by their proper motions),
  after rejecting 5-sigma outliers (blends with undetected neighbours, cosmic-ray hits); the
  number rejected is reported;
* zero-point error (mag) per CCD: measured ``zp_nightly`` minus the true zero-point;
* completeness at S/N 10: the fraction of true stars detected, among those whose expected
  S/N (from the measured S/N-magnitude relation of the same CCD) is within 10 +- 1;
* flux pull width: robust standard deviation (1.4826 MAD) of (measured - true) / error of the
  PSF-fit fluxes (``flux_psf``, ``flux_err_psf``: the catalog's total flux of a point source
  and its full error, Fisher error scaled by the fit's chi2 plus the CCD's PSF-flux floor) of
  isolated (no other true object, star or galaxy, within 3"), unflagged, matched stars with
  S/N 5-500, over all CCDs; also given per S/N bin (:data:`PULL_SNR_BINS`), where a
  flux-dependent bias shows. These fluxes are in electrons, compared with the true zero-point:
  the width also holds any flux-scale offset of the CCD (flat-field normalisation);
* calibrated flux pull width: the same stars' fluxes on the catalog's calibrated scale (each
  CCD's ``zp_nightly``) against the truth, with the zero-point's error (``zp_nightly_err``) in
  quadrature, i.e. what a user of the calibrated catalog gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy.spatial import cKDTree
from sqlalchemy import select

from surveydm.db import Registry
from surveydm.db.models.calibration import Detection
from surveydm.db.models.raw import Image, Mosaic

MATCH_RADIUS_ARCSEC = 1.0
ISOLATION_ARCSEC = 3.0

#: S/N bins of the per-bin flux pull figures.
PULL_SNR_BINS = ((5.0, 20.0), (20.0, 100.0), (100.0, 500.0))


@dataclass
class CCDAccuracy:
    """Figures of one reduced CCD."""

    file: str
    ccd_num: int
    filter: str
    astro_rms_arcsec: float
    n_astro: int
    dzp: float | None
    n_snr10: int
    completeness_snr10: float | None
    pulls: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    pull_snr: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    pull_ratio: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    calibrated_pulls: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    offsets: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2)))


def clipped_rms(offsets: np.ndarray, nsigma: float = 5.0) -> tuple[float, int]:
    """2-D RMS (arcsec) of ``offsets`` (n, 2) after rejecting outliers farther than ``nsigma``
    robust sigmas (1.4826 MAD per axis) from zero, iterated; returns (rms, n rejected)."""
    keep = np.ones(len(offsets), bool)
    for _ in range(5):
        if keep.sum() < 3:
            break
        sigma = 1.4826 * np.median(np.abs(offsets[keep]), axis=0)
        new = np.all(np.abs(offsets) <= nsigma * np.maximum(sigma, 1e-6), axis=1)
        if np.array_equal(new, keep):
            break
        keep = new
    if not keep.any():
        return float("nan"), int(len(offsets))
    rms = float(np.sqrt(np.mean(np.sum(offsets[keep] ** 2, axis=1))))
    return rms, int((~keep).sum())


@dataclass
class AccuracyReport:
    """Night-level accuracy figures and their per-CCD breakdown."""

    ccds: list[CCDAccuracy]

    @property
    def astro_offsets(self) -> np.ndarray:
        """(n, 2) offsets of every bright star of every CCD from its true position, arcsec."""
        return np.concatenate([c.offsets for c in self.ccds]) if self.ccds else np.zeros((0, 2))

    @property
    def astro_rms_arcsec(self) -> float:
        """RMS over the bright stars of all CCDs (arcsec), 5-sigma outliers rejected."""
        return clipped_rms(self.astro_offsets)[0]

    @property
    def dzp(self) -> np.ndarray:
        """Zero-point errors of the CCDs with a zero-point (mag)."""
        return np.array([c.dzp for c in self.ccds if c.dzp is not None])

    @property
    def completeness_snr10(self) -> float:
        """Detected fraction of stars expected at S/N 10, over all CCDs."""
        n = sum(c.n_snr10 for c in self.ccds)
        det = sum((c.completeness_snr10 or 0) * c.n_snr10 for c in self.ccds)
        return det / n if n else float("nan")

    @property
    def pull_width(self) -> float:
        """Robust width of the flux pull distribution over all CCDs (electrons)."""
        return _robust_width([c.pulls for c in self.ccds])

    @property
    def calibrated_pull_width(self) -> float:
        """Robust width of the calibrated flux pull distribution over all CCDs."""
        return _robust_width([c.calibrated_pulls for c in self.ccds])

    def pulls_by_snr(self) -> list[tuple[float, float, int, float, float, float]]:
        """Per S/N bin of :data:`PULL_SNR_BINS`: (lo, hi, n, median pull, robust pull width,
        median measured / true flux)."""
        pulls = np.concatenate([c.pulls for c in self.ccds]) if self.ccds else np.zeros(0)
        snr = np.concatenate([c.pull_snr for c in self.ccds]) if self.ccds else np.zeros(0)
        ratio = np.concatenate([c.pull_ratio for c in self.ccds]) if self.ccds else np.zeros(0)
        out = []
        for lo, hi in PULL_SNR_BINS:
            sel = (snr > lo) & (snr <= hi) if snr.size == pulls.size else np.zeros(0, bool)
            n = int(sel.sum())
            if n < 10:
                out.append((lo, hi, n, np.nan, np.nan, np.nan))
                continue
            p = pulls[sel]
            med = float(np.median(p))
            width = float(1.4826 * np.median(np.abs(p - med)))
            out.append((lo, hi, n, med, width, float(np.median(ratio[sel]))))
        return out

    def lines(self) -> list[str]:
        """Human-readable summary with the targets of issue 6."""
        dzp = self.dzp
        return [
            f"CCDs compared:                  {len(self.ccds)}",
            f"astrometric RMS, bright stars:  {self.astro_rms_arcsec:.4f} arcsec (target <= 0.03; "
            f"{clipped_rms(self.astro_offsets)[1]} of {len(self.astro_offsets)} stars rejected "
            "as 5-sigma outliers)",
            f"zero-point error per CCD:       max |dZP| {np.max(np.abs(dzp)):.4f} mag, "
            f"median {np.median(dzp):+.4f} (target <= 0.01)"
            if dzp.size
            else "zero-point error per CCD:       no zero-points",
            f"completeness at S/N 10:         {self.completeness_snr10:.3f} (target >= 0.9)",
            f"flux pull width:                {self.pull_width:.3f} (target 1.0 +- 0.1)",
            f"calibrated flux pull width:     {self.calibrated_pull_width:.3f} "
            "(with the zero-point error)",
        ] + [
            f"  S/N {lo:3.0f}-{hi:3.0f}: {n:5d} stars, pull median {med:+.2f} width {w:.2f}, "
            f"flux ratio {r:.4f}"
            for lo, hi, n, med, w, r in self.pulls_by_snr()
        ]


def _robust_width(parts: list[np.ndarray]) -> float:
    """1.4826 MAD of the concatenated values (NaN with fewer than 10)."""
    v = np.concatenate(parts) if parts else np.zeros(0)
    if v.size < 10:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _calibrated_pulls(image, flux, ferr, true_flux, dzp):  # noqa: ANN001, ANN202
    """Pulls of ``flux`` (e-) scaled by the CCD's measured zero-point, the zero-point's error
    in quadrature; empty without a zero-point or its error."""
    zp_err = image.zp_nightly_err
    if dzp is None or zp_err is None or not np.isfinite(zp_err):
        return np.zeros(0)
    scale = 10.0 ** (-0.4 * dzp)
    cal = flux * scale
    err = np.hypot(ferr * scale, cal * 0.4 * np.log(10.0) * zp_err)
    return (cal - true_flux) / err


def _tangent(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Gnomonic projection about (ra0, dec0), arcsec; (n, 2)."""
    ra, dec, ra0, dec0 = (np.radians(np.asarray(v, float)) for v in (ra, dec, ra0, dec0))
    cosc = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    x = np.cos(dec) * np.sin(ra - ra0) / cosc
    y = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cosc
    return np.degrees(np.column_stack([x, y])) * 3600.0


def night_accuracy(
    registry: Registry, truth_dir: Path, *, production_id: int | None = None
) -> AccuracyReport:
    """Compare every reduced CCD in the registry with the simulation truth in ``truth_dir``.

    Raises:
        FileNotFoundError: the truth files are missing.
    """
    table = pq.read_table(Path(truth_dir) / "objects.parquet")
    meta = table.schema.metadata or {}
    truth_epoch = float(meta.get(b"epoch", b"2016.0"))
    objects = table.to_pydict()
    exposures = pq.read_table(Path(truth_dir) / "exposures.parquet").to_pylist()
    truth_exp = {(e["file"], e["ccd_num"]): e for e in exposures}
    obj_ra = np.asarray(objects["ra"], float)
    obj_dec = np.asarray(objects["dec"], float)
    pmra = np.nan_to_num(np.asarray(objects["pmra"], float))
    pmdec = np.nan_to_num(np.asarray(objects["pmdec"], float))
    is_star = np.asarray(objects["kind"]) == "star"
    ccds = []
    with registry.session(write=False) as s:
        q = (
            select(Image, Mosaic.filename, Mosaic.mjd_obs, Mosaic.exptime)
            .join(Mosaic, Image.mosaic_id == Mosaic.id)
            .where(Mosaic.kind == "red_science", Image.amp_num.is_(None))
        )
        if production_id is not None:
            q = q.where(Mosaic.production_id == production_id)
        rows = s.execute(q).all()
        dets = {
            image.id: s.execute(
                select(
                    Detection.ra,
                    Detection.dec,
                    Detection.flux_psf,
                    Detection.flux_err_psf,
                    Detection.snr,
                    Detection.flags,
                ).where(Detection.image_id == image.id)
            ).all()
            for image, *_ in rows
        }
    for image, filename, mjd, exptime in rows:
        truth = truth_exp.get((filename, image.ccd_num))
        if truth is None:
            continue
        d = np.array(dets[image.id], dtype=float).reshape(-1, 6)
        years = 2000.0 + ((mjd or 51544.5) - 51544.5) / 365.25 - truth_epoch
        dec_t = obj_dec + pmdec * years / 3.6e6
        ra_t = obj_ra + pmra * years / 3.6e6 / np.cos(np.radians(dec_t))
        ra0, dec0 = (image.ra_min + image.ra_max) / 2, (image.dec_min + image.dec_max) / 2
        in_ccd = (
            (ra_t > image.ra_min)
            & (ra_t < image.ra_max)
            & (dec_t > image.dec_min)
            & (dec_t < image.dec_max)
        )
        idx = np.flatnonzero(in_ccd & is_star)
        t_xy = _tangent(ra_t[idx], dec_t[idx], ra0, dec0)
        # isolated: no other object, star or galaxy, within ISOLATION_ARCSEC
        everything = np.flatnonzero(in_ccd)
        neighbours = cKDTree(_tangent(ra_t[everything], dec_t[everything], ra0, dec0))
        isolated = np.array(
            [len(n) == 1 for n in neighbours.query_ball_point(t_xy, ISOLATION_ARCSEC)], bool
        ).reshape(-1)
        mag = np.asarray(objects[f"mag_{image.filter}"], float)[idx]
        zp_true = truth["zeropoint"]
        true_flux = 10 ** (-0.4 * (mag - zp_true)) * (exptime or 0.0)
        ccds.append(_compare_ccd(image, filename, d, t_xy, isolated, true_flux, ra0, dec0, zp_true))
    return AccuracyReport(ccds)


def _compare_ccd(image, filename, d, t_xy, isolated_t, true_flux, ra0, dec0, zp_true):  # noqa: ANN001, ANN202
    dzp = None if image.zp_nightly is None else float(image.zp_nightly - zp_true)
    if not len(d) or not len(t_xy):
        return CCDAccuracy(filename, image.ccd_num, image.filter, np.nan, 0, dzp, 0, None)
    d_xy = _tangent(d[:, 0], d[:, 1], ra0, dec0)
    dist, j = cKDTree(t_xy).query(d_xy, distance_upper_bound=MATCH_RADIUS_ARCSEC)
    matched = np.isfinite(dist)
    flux, ferr, snr, flags = d[:, 2], d[:, 3], d[:, 4], d[:, 5].astype(int)
    good = matched & (flags == 0)
    jj = np.where(matched, j, 0)
    bright = good & (snr > 100) & isolated_t[jj]
    off = d_xy[bright] - t_xy[j[bright]]
    rms = clipped_rms(off)[0] if bright.any() else np.nan
    pull_sel = good & isolated_t[jj] & (snr > 5) & (snr < 500) & np.isfinite(flux) & (ferr > 0)
    pulls = (flux[pull_sel] - true_flux[j[pull_sel]]) / ferr[pull_sel]
    pull_snr = snr[pull_sel]
    pull_ratio = flux[pull_sel] / true_flux[j[pull_sel]]
    calibrated = _calibrated_pulls(
        image, flux[pull_sel], ferr[pull_sel], true_flux[j[pull_sel]], dzp
    )
    # expected S/N of each truth star from the measured S/N - flux relation (S/N ~ flux^a)
    fit = matched & (snr > 3) & (snr < 200) & (flags == 0)
    completeness, n10 = None, 0
    if fit.sum() > 20:
        coeffs = np.polyfit(np.log10(true_flux[j[fit]]), np.log10(snr[fit]), 2)
        expected = 10 ** np.polyval(coeffs, np.log10(np.clip(true_flux, 1e-3, None)))
        sel = (expected > 9) & (expected < 11) & isolated_t
        detected = np.zeros(len(t_xy), bool)
        detected[j[matched]] = True
        n10 = int(sel.sum())
        completeness = float(detected[sel].mean()) if n10 else None
    return CCDAccuracy(
        filename,
        image.ccd_num,
        image.filter,
        rms,
        int(bright.sum()),
        dzp,
        n10,
        completeness,
        pulls,
        pull_snr,
        pull_ratio,
        calibrated,
        off,
    )
