"""Nightly report computations (seed 000 section 7.3, figures 10 and 11).

The report reads the exposure-level metrics of ``mosaic`` (seeing as the median PSF FWHM over
its CCDs, sky background, transparency, nightly zero-point, astrometric RMS, airmass) and
aggregates the
per-CCD metrics of ``image`` in one grouped query (worst CCD PSF FWHM, median-like mean of the
zero-point uncertainty; exposure values missing at mosaic level fall back to the CCD means).
Science exposures are the ``red_science`` mosaics of the nights, or the raw ``science``
mosaics for exposures without a reduced row (matched by obs set and exposure number).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveydm.db.models.raw import Image, Mosaic, ObsSet
from surveydm.errors import SurveydmError
from surveydm.publish.report.figures import empty_png, figure_png
from surveydm.publish.report.rejected import RejectedFile, rejected_files

#: Plots of the report: name -> (attribute of :class:`ExposureQuality`, axis label).
PLOTS: dict[str, tuple[str, str]] = {
    "seeing": ("seeing", "seeing (median PSF FWHM), arcsec"),
    "sky_background": ("sky_background", "sky background, e-/s/pixel"),
    "transparency": ("transparency", "transparency"),
    "zero_point": ("zp_nightly", "zero-point, AB mag (1 e-/s)"),
    "airmass": ("airmass", "airmass"),
}
#: Status values of the astrometry / photometry / detrending columns that fail an exposure.
FAILED_STATUSES = frozenset({"fail", "failed", "bad", "error"})


class ReportError(SurveydmError):
    """Bad report parameters (night range, cut values)."""


@dataclass(frozen=True)
class QualityCuts:
    """Cuts a science exposure must pass; ``None`` disables a cut.

    Attributes:
        min_transparency: lowest transparency (fraction of the photometric flux).
        max_seeing: largest seeing, the median PSF FWHM of the exposure's CCDs, arcsec.
        max_psf_fwhm: largest PSF FWHM of any of its CCDs, arcsec (PSF uniformity).
        max_astro_rms: largest astrometric RMS against the reference catalog, arcsec.
        max_zp_err: largest mean zero-point uncertainty of its CCDs, mag (photometry).
        min_zp: lowest nightly zero-point, mag (a low value means clouds or a problem).
        require_status_ok: fail exposures whose detrending, astrometry or photometry status
            is one of :data:`FAILED_STATUSES`.
    """

    min_transparency: float | None = 0.7
    max_seeing: float | None = 2.0
    max_psf_fwhm: float | None = None
    max_astro_rms: float | None = 0.3
    max_zp_err: float | None = 0.05
    min_zp: float | None = None
    require_status_ok: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "require_status_ok" or v is None:
                continue
            if not np.isfinite(v) or (f.name != "min_zp" and v < 0):
                raise ReportError(f"cut {f.name} must be a finite non-negative number, not {v}")
        if self.min_transparency is not None and self.min_transparency > 1.5:
            raise ReportError(f"min_transparency is a fraction (0..1), not {self.min_transparency}")


@dataclass
class ExposureQuality:
    """Metrics of one science exposure and the verdict of the cuts."""

    mosaic_id: int
    obs_set: str
    night: str
    filename: str
    exp_num: int | None
    date_obs: datetime | None
    filter_tray: str | None
    object: str | None
    ra: float | None
    dec: float | None
    exptime: float | None
    airmass: float | None
    seeing: float | None
    worst_psf_fwhm: float | None
    sky_background: float | None
    transparency: float | None
    zp_nightly: float | None
    zp_err: float | None
    astro_rms: float | None
    statuses: dict[str, str | None] = field(default_factory=dict)
    #: worst QC result of the exposure (``pass``, ``warn``, ``fail``), None before its QC ran.
    qc_status: str | None = None
    failed_cuts: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no cut failed."""
        return not self.failed_cuts


def apply_cuts(e: ExposureQuality, cuts: QualityCuts) -> list[str]:
    """Names of the cuts exposure ``e`` fails. A missing metric fails its cut (an exposure the
    pipeline could not measure is not good data)."""
    failed: list[str] = []

    def low(value: float | None, limit: float | None, name: str) -> None:
        if limit is not None and (value is None or value < limit):
            failed.append(name)

    def high(value: float | None, limit: float | None, name: str) -> None:
        if limit is not None and (value is None or value > limit):
            failed.append(name)

    low(e.transparency, cuts.min_transparency, "transparency")
    high(e.seeing, cuts.max_seeing, "seeing")
    high(e.worst_psf_fwhm, cuts.max_psf_fwhm, "psf")
    high(e.astro_rms, cuts.max_astro_rms, "astrometry")
    high(e.zp_err, cuts.max_zp_err, "photometry")
    low(e.zp_nightly, cuts.min_zp, "zero_point")
    if cuts.require_status_ok:
        for name, value in e.statuses.items():
            if value is not None and value.lower() in FAILED_STATUSES:
                failed.append(name)
    return failed


@dataclass
class NightlyReport:
    """The report of nights ``first_night``..``last_night`` (inclusive)."""

    first_night: date
    last_night: date
    cuts: QualityCuts
    exposures: list[ExposureQuality]
    #: raw files listed in the manifests and never registered (so never reduced), with why
    rejected: list[RejectedFile] = field(default_factory=list)

    @property
    def n_science(self) -> int:
        """Science exposures in the range."""
        return len(self.exposures)

    @property
    def n_pass(self) -> int:
        """Science exposures passing every cut."""
        return sum(e.passed for e in self.exposures)

    @property
    def pass_percent(self) -> float | None:
        """Percentage of science exposures passing (None without exposures)."""
        return 100.0 * self.n_pass / self.n_science if self.exposures else None

    def pass_percent_by_night(self) -> dict[str, float]:
        """Percentage passing per night (``YYYY-MM-DD`` -> percent)."""
        tot: dict[str, int] = defaultdict(int)
        ok: dict[str, int] = defaultdict(int)
        for e in self.exposures:
            tot[e.night] += 1
            ok[e.night] += e.passed
        return {n: 100.0 * ok[n] / tot[n] for n in sorted(tot)}

    def failed_by_cut(self) -> dict[str, int]:
        """Number of exposures failing each cut."""
        out: dict[str, int] = defaultdict(int)
        for e in self.exposures:
            for c in e.failed_cuts:
                out[c] += 1
        if self.rejected:
            out["rejected"] = len(self.rejected)
        return dict(sorted(out.items()))

    @property
    def failing(self) -> list[ExposureQuality]:
        """Exposures failing at least one cut: the list to reschedule."""
        return [e for e in self.exposures if not e.passed]

    def failing_csv(self) -> str:
        """The failing exposures as CSV (RFC 4180): what the survey planner re-observes."""
        cols = [
            "night", "obs_set", "filename", "exp_num", "date_obs", "object", "ra", "dec",
            "filter_tray", "exptime", "airmass", "seeing", "transparency", "sky_background",
            "zp_nightly", "zp_err", "astro_rms", "failed_cuts",
        ]  # fmt: skip
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(cols)
        for e in self.failing:
            d = asdict(e)
            d["date_obs"] = e.date_obs.isoformat() if e.date_obs else ""
            d["failed_cuts"] = ";".join(e.failed_cuts)
            w.writerow(["" if d[c] is None else d[c] for c in cols])
        for r in self.rejected:  # never registered: only what the manifest says is known
            d = {"night": r.night, "obs_set": r.obs_set, "filename": r.filename}
            d["failed_cuts"] = f"rejected ({r.kind or 'unknown kind'}): {r.reason}"
            w.writerow([d.get(c, "") for c in cols])
        return buf.getvalue()

    # -- figures ---------------------------------------------------------------------------
    def plot(self, name: str) -> bytes:
        """PNG of one plot: a metric of :data:`PLOTS` against time, or ``pass_fraction``.

        Raises:
            ReportError: unknown plot name.
        """
        if name == "pass_fraction":
            return self._pass_plot()
        if name not in PLOTS:
            raise ReportError(f"unknown plot {name!r}; one of {[*PLOTS, 'pass_fraction']}")
        attr, label = PLOTS[name]
        pts = [
            (e.date_obs, getattr(e, attr), e.passed, e.filter_tray or "")
            for e in self.exposures
            if e.date_obs is not None and getattr(e, attr) is not None
        ]
        if not pts:
            return empty_png(f"no {name.replace('_', ' ')} measured", size=(7, 2.8))
        fig = Figure(figsize=(8, 2.9))
        ax = fig.add_subplot()
        trays = sorted({p[3] for p in pts})
        for tray in trays:
            sel = [p for p in pts if p[3] == tray]
            ax.plot(
                [p[0] for p in sel], [p[1] for p in sel], "o-", ms=4, lw=0.8,
                label=tray or "(no tray)",
            )  # fmt: skip
        bad = [p for p in pts if not p[2]]
        if bad:
            ax.scatter(
                [p[0] for p in bad], [p[1] for p in bad], s=60, facecolors="none",
                edgecolors="#e53935", label="fails a cut", zorder=3,
            )  # fmt: skip
        limit = {
            "seeing": self.cuts.max_seeing,
            "transparency": self.cuts.min_transparency,
            "zero_point": self.cuts.min_zp,
        }.get(name)
        if limit is not None:
            ax.axhline(limit, color="#e53935", ls="--", lw=0.8)
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlabel("time (UTC)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best")
        fig.autofmt_xdate()
        return figure_png(fig)

    def _pass_plot(self) -> bytes:
        by_night = self.pass_percent_by_night()
        if not by_night:
            return empty_png("no science exposures", size=(5, 2.8))
        fig = Figure(figsize=(5, 2.9))
        ax = fig.add_subplot()
        ax.bar(list(by_night), list(by_night.values()), color="#43a047")
        ax.set_ylim(0, 100)
        ax.set_ylabel("science frames passing QC, %", fontsize=8)
        ax.tick_params(labelsize=7)
        for i, v in enumerate(by_night.values()):
            ax.text(i, min(v + 3, 95), f"{v:.0f}%", ha="center", fontsize=8)
        return figure_png(fig)

    def figures(self) -> dict[str, bytes]:
        """Every plot of the report as PNG bytes (name -> PNG)."""
        return {name: self.plot(name) for name in [*PLOTS, "pass_fraction"]}


def _night(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ReportError(f"not a night (YYYY-MM-DD): {value!r}") from None


def latest_night(session: Session) -> date | None:
    """The most recent night with a science exposure, or None."""
    return session.scalar(
        select(func.max(ObsSet.night))
        .join(Mosaic, Mosaic.obs_set_id == ObsSet.id)
        .where(Mosaic.kind.in_(("science", "red_science")))
    )


def build_report(
    session: Session,
    first_night: date | str,
    last_night: date | str | None = None,
    cuts: QualityCuts | None = None,
) -> NightlyReport:
    """Compute the nightly report of ``first_night``..``last_night`` (inclusive, local night
    dates as ``obs_set.night``) under ``cuts`` (default :class:`QualityCuts`).

    Three queries whatever the number of exposures: the science mosaics with their obs sets,
    and one grouped aggregate over their CCD rows.

    Raises:
        ReportError: a night is not ``YYYY-MM-DD`` or ``last_night`` precedes ``first_night``.
    """
    first = _night(first_night)
    last = _night(last_night) if last_night is not None else first
    if last < first:
        raise ReportError(f"last night {last} is before first night {first}")
    if (last - first).days > 366:
        raise ReportError("a report covers at most one year of nights")
    cuts = cuts or QualityCuts()
    rows = session.execute(
        select(Mosaic, ObsSet.obs_set, ObsSet.night)
        .join(ObsSet, Mosaic.obs_set_id == ObsSet.id)
        .where(
            ObsSet.night >= first,
            ObsSet.night <= last,
            Mosaic.kind.in_(("science", "red_science")),
        )
        .order_by(Mosaic.date_obs, Mosaic.id)
    ).all()
    # A reduced row replaces the raw row of the same exposure.
    reduced = {(m.obs_set_id, m.exp_num, m.filename) for m, _, _ in rows if m.kind == "red_science"}
    reduced_exp = {(k[0], k[1]) for k in reduced if k[1] is not None}
    chosen = [
        (m, o, n)
        for m, o, n in rows
        if m.kind == "red_science" or (m.obs_set_id, m.exp_num) not in reduced_exp
    ]
    ccd = _ccd_aggregates(session, [m.id for m, _, _ in chosen])
    exposures: list[ExposureQuality] = []
    for m, obs_set, night in chosen:
        c = ccd.get(m.id, {})
        e = ExposureQuality(
            mosaic_id=m.id,
            obs_set=obs_set,
            night=night.isoformat() if isinstance(night, date) else str(night),
            filename=m.filename,
            exp_num=m.exp_num,
            date_obs=m.date_obs,
            filter_tray=m.filter_tray,
            object=m.object,
            ra=m.ra,
            dec=m.dec,
            exptime=m.exptime,
            airmass=m.airmass,
            seeing=m.median_psf_fwhm if m.median_psf_fwhm is not None else c.get("psf"),
            worst_psf_fwhm=c.get("worst", m.median_psf_fwhm),
            sky_background=m.sky_background,
            transparency=m.transparency if m.transparency is not None else c.get("tr"),
            zp_nightly=m.zp_nightly if m.zp_nightly is not None else c.get("zp"),
            zp_err=c.get("zperr"),
            astro_rms=m.astro_rms if m.astro_rms is not None else c.get("arms"),
            statuses={
                "detrending": m.detrend_status,
                "astrometry_status": m.astro_status,
                "photometry_status": m.photo_status,
            },
            qc_status=m.qc_status,
        )
        measured = (e.seeing, e.transparency, e.zp_nightly, e.astro_rms, e.sky_background)
        if m.kind == "science" and all(v is None for v in measured):
            e.failed_cuts = ["not_reduced"]  # no nightly result: reschedule or reprocess
        else:
            e.failed_cuts = apply_cuts(e, cuts)
        exposures.append(e)
    return NightlyReport(
        first_night=first,
        last_night=last,
        cuts=cuts,
        exposures=exposures,
        rejected=rejected_files(session, first, last),
    )


def _ccd_aggregates(session: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per mosaic id: worst and mean CCD PSF FWHM, mean zero-point and its error, mean
    transparency and astrometric RMS of its CCD rows (one grouped query per 5000 mosaics)."""
    ccd: dict[int, dict[str, Any]] = {}
    for chunk in (ids[i : i + 5000] for i in range(0, len(ids), 5000)):
        stmt = (
            select(
                Image.mosaic_id,
                func.max(Image.psf_fwhm),
                func.avg(Image.psf_fwhm),
                func.avg(Image.zp_nightly),
                func.avg(Image.zp_nightly_err),
                func.avg(Image.transparency),
                func.avg(Image.astro_rms),
            )
            .where(Image.mosaic_id.in_(chunk), Image.amp_num.is_(None))
            .group_by(Image.mosaic_id)
        )
        for mid, worst, psf, zp, zperr, tr, arms in session.execute(stmt):
            ccd[mid] = {"worst": worst, "psf": psf, "zp": zp, "zperr": zperr, "tr": tr,
                        "arms": arms}  # fmt: skip
    return ccd
