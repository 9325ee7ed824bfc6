"""The plan of a simulated night: which exposures are taken when, where and in which conditions
(calibrations at the zenith, focus, then science dithered around the pointings once the field
is low enough; docs/simulate.md), with the site's sidereal time and airmass."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from astropy.time import Time

from surveydm.instruments import Instrument
from surveydm.simulation.config import SimulationConfig


@dataclass(frozen=True)
class ExposureCounts:
    """How many exposures of each kind a night takes (flats: per filter tray)."""

    bias: int
    flats_per_tray: int
    science: int
    test: int
    focus: int


@dataclass
class Exposure:
    """One planned exposure: pointing (true and in the header, deg), conditions, ambient."""

    kind: str
    tray: str
    exptime: float
    mjd: float
    ra: float  # true optical axis
    dec: float
    rotation: float
    ra_hdr: float
    dec_hdr: float
    seeing: float
    transparency: float
    airmass: float
    sky_factor: float
    object: str
    ambient: dict


def julian_year(mjd: float) -> float:
    return 2000.0 + (mjd - 51544.5) / 365.25


def lst_deg(mjd: float, lon: float) -> float:
    """Local mean sidereal time (deg) from the GMST formula of the IAU 1982 model."""
    gmst_h = 18.697374558 + 24.06570982441908 * (mjd + 2400000.5 - 2451545.0)
    return (gmst_h * 15.0 + lon) % 360.0


def airmass(mjd: float, ra: float, dec: float, lat: float, lon: float) -> float:
    """sec(z) with the Hardie (1962) correction at hour angle LST - RA."""
    ha = math.radians((lst_deg(mjd, lon) - ra) % 360.0)
    phi, d = math.radians(lat), math.radians(dec)
    cosz = math.sin(phi) * math.sin(d) + math.cos(phi) * math.cos(d) * math.cos(ha)
    if cosz < 0.1:
        return 10.0
    s = 1 / cosz - 1
    return float(1 / cosz - 0.0018167 * s - 0.002875 * s**2 - 0.0008083 * s**3)


def default_trays(instrument: Instrument) -> list[str]:
    """The first tray and, when the camera has one, the r tray."""
    names = instrument.tray_names
    out = [names[0]]
    if "r" in names and "r" not in out:
        out.append("r")
    return out


def tray_is_narrow(instrument: Instrument, tray: str) -> bool:
    """True when the tray holds a narrow-band filter."""
    return any(
        instrument.filter(f).kind == "narrow" for f in instrument.tray(tray).filters.values()
    )


class _Planner:
    """Builds the night's exposures in time order; ``t`` (MJD) is when the next one starts.
    The random draws happen in a fixed order, so a seed gives the same night every time."""

    def __init__(
        self,
        instrument: Instrument,
        cfg: SimulationConfig,
        rng: np.random.Generator,
        site: tuple[float, float],
        t: float,
    ) -> None:
        self.instrument, self.cfg, self.rng = instrument, cfg, rng
        self.lat, self.lon = site
        self.t = t
        self.exposures: list[Exposure] = []

    def ambient(self) -> dict:
        rng = self.rng
        return {
            "ambient_temp": round(float(rng.normal(8.0, 1.5)), 2),
            "humidity": round(float(np.clip(rng.normal(35, 10), 5, 90)), 1),
            "pressure": round(float(rng.normal(775.0, 1.5)), 1),
            "wind_speed": round(float(abs(rng.normal(5, 3))), 1),
            "wind_dir": round(float(rng.uniform(0, 360)), 1),
        }

    def conditions(self) -> dict[str, float]:
        """Seeing (arcsec), sky level factor and transparency of an on-sky exposure."""
        rng, cfg = self.rng, self.cfg
        return {
            "seeing": float(rng.uniform(*cfg.seeing_range_arcsec)),
            "sky": float(rng.uniform(1.0, 1.3)),
            "transp": 1 - abs(rng.normal(0, cfg.transparency_sigma)),
        }

    def add(
        self,
        kind: str,
        tray: str,
        exptime: float,
        ra: float,
        dec: float,
        obj: str,
        seeing: float = math.nan,
        sky: float = math.nan,
        transp: float = math.nan,
    ) -> None:
        """Append one exposure pointed at (ra, dec) with a random pointing error and rotation."""
        rng, cfg, t = self.rng, self.cfg, self.t
        err_r = cfg.pointing_error_arcsec * math.sqrt(rng.random())
        err_a = rng.uniform(0, 2 * math.pi)
        ra_h = ra + err_r * math.cos(err_a) / 3600 / math.cos(math.radians(dec))
        dec_h = dec + err_r * math.sin(err_a) / 3600
        self.exposures.append(
            Exposure(
                kind=kind,
                tray=tray,
                exptime=exptime,
                mjd=t,
                ra=ra,
                dec=dec,
                rotation=float(rng.normal(0, cfg.rotation_error_deg)),
                ra_hdr=ra_h % 360,
                dec_hdr=dec_h,
                seeing=seeing,
                transparency=transp,
                airmass=airmass(t + exptime / 172800, ra, dec, self.lat, self.lon),
                sky_factor=sky,
                object=obj,
                ambient=self.ambient(),
            )
        )
        self.t += (exptime + cfg.overhead_s) / 86400

    def park(self) -> tuple[float, float]:
        """Calibrations are taken with the telescope parked at the zenith."""
        return lst_deg(self.t, self.lon), self.lat

    def calibrations(self, trays: list[str], n_bias: int, n_flats: int, n_test: int) -> None:
        cfg = self.cfg
        for _ in range(n_bias):
            self.add("bias", trays[0], 0.0, *self.park(), "bias")
        for tray in trays:
            for _ in range(n_flats):
                self.add("flat", tray, cfg.exptime_flat_s, *self.park(), "dome flat")
        for _ in range(n_test):
            self.add("test", trays[0], cfg.exptime_test_s, *self.park(), "dark test")

    def science_start(self, mjd0: float, n_focus: int) -> None:
        """Science starts when the field is below airmass 1.3 between 20:00 and 06:00 UT, or
        at its lowest airmass in that window if it never gets there; focus exposures before."""
        cfg = self.cfg
        ra0, dec0 = cfg.field_ra_deg, cfg.field_dec_deg
        grid = [mjd0 + 1 / 24 + step * 10 / 1440 for step in range(61)]
        airmasses = [airmass(c, ra0, dec0, self.lat, self.lon) for c in grid]
        below = [c for c, a in zip(grid, airmasses, strict=True) if a < 1.3]
        start = below[0] if below else grid[int(np.argmin(airmasses))]
        self.t = max(self.t, start - n_focus * (cfg.exptime_focus_s + cfg.overhead_s) / 86400)

    def focus(self, tray: str, n_focus: int) -> None:
        cfg = self.cfg
        for _ in range(n_focus):
            ra0, dec0 = cfg.field_ra_deg, cfg.field_dec_deg
            self.add("focus", tray, cfg.exptime_focus_s, ra0, dec0, "focus", **self.conditions())

    def science(self, trays: list[str], n_science: int) -> None:
        """Science exposures cycling through the trays, dithered around each pointing."""
        cfg = self.cfg
        ra0, dec0 = cfg.field_ra_deg, cfg.field_dec_deg
        cosd = math.cos(math.radians(dec0))
        n_dith = max(1, min(cfg.dithers_per_pointing, len(cfg.dither_offsets_arcsec)))
        for i in range(n_science):
            tray = trays[i % len(trays)]
            j = i // len(trays)
            p = (cfg.first_pointing + j // n_dith) % len(cfg.pointing_offsets_deg)
            dxo, dyo = cfg.pointing_offsets_deg[p]
            ddx, ddy = cfg.dither_offsets_arcsec[j % n_dith]
            dec = dec0 + dyo + ddy / 3600
            ra = ra0 + (dxo + ddx / 3600) / cosd
            narrow = tray_is_narrow(self.instrument, tray)
            exptime = cfg.exptime_narrow_s if narrow else cfg.exptime_broad_s
            obj = f"COSMOS-P{p + 1}"
            self.add("science", tray, exptime, ra % 360, dec, obj, **self.conditions())


def plan_night(
    instrument: Instrument,
    cfg: SimulationConfig,
    rng: np.random.Generator,
    night: dt.date,
    trays: list[str],
    counts: ExposureCounts,
    site: tuple[float, float],
    not_before: float = 0.0,
) -> list[Exposure]:
    """The night's exposures in time order (see docs/simulate.md), none before
    ``not_before`` (MJD: the end of the night's previous obs set).

    Args:
        site: (latitude, longitude) of the observatory, degrees (east positive).
    """
    mjd0 = Time(dt.datetime.combine(night, dt.time(19, 0)), scale="utc").mjd
    planner = _Planner(instrument, cfg, rng, site, max(mjd0, not_before))
    planner.calibrations(trays, counts.bias, counts.flats_per_tray, counts.test)
    planner.science_start(mjd0, counts.focus)
    planner.focus(trays[0], counts.focus)
    planner.science(trays, counts.science)
    return planner.exposures
