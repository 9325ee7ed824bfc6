"""FITS headers of a simulated raw mosaic, written through the instrument description's keyword
mapping as the camera's data acquisition would (docs/simulate.md)."""

from __future__ import annotations

from astropy.io import fits
from astropy.time import Time

from surveydm.instruments import Instrument
from surveydm.simulation.config import SimulationError
from surveydm.simulation.plan import Exposure


def sexagesimal(value: float, hours: bool) -> str:
    v = value / 15.0 if hours else value
    sign = "-" if v < 0 else ("" if hours else "+")
    v = abs(v)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60) * 3600
    return f"{sign}{d:02d}:{m:02d}:{s:06.3f}" if hours else f"{sign}{d:02d}:{m:02d}:{s:05.2f}"


def obstype_value(instrument: Instrument, kind: str) -> str:
    prefer = {"flat": "DOMEFLAT", "science": "SCIENCE", "bias": "BIAS"}.get(kind)
    values = instrument.header.obstype_values
    if prefer in values and values[prefer] == kind:
        return prefer
    for raw, k in values.items():
        if k == kind:
            return raw
    raise SimulationError(f"{instrument.name}: header.obstype_values has no value for {kind}")


def primary_header(
    instrument: Instrument,
    e: Exposure,
    obs_set: str,
    expnum: int,
    filename: str,
    focus: tuple[int, float, float] = (0, 0.0, 0.0),
) -> fits.Header:
    h = fits.Header()
    m = instrument.header
    hours = m.ra.unit == "hourangle"
    iso = Time(e.mjd, format="mjd", scale="utc").isot
    if m.time_obs is not None:  # DATE-OBS with the date only, the time apart (TIME-OBS, UT)
        h[m.time_obs.keyword] = (iso[11:], "UTC time of the start of exposure")
        iso = iso[:10]
    values = {
        "obstype": obstype_value(instrument, e.kind),
        "exptime": float(e.exptime),
        "date_obs": iso,
        "mjd_obs": round(e.mjd, 8),
        "filter_tray": e.tray,
        "ra": sexagesimal(e.ra_hdr, True) if hours else round(e.ra_hdr, 6),
        "dec": sexagesimal(e.dec_hdr, False) if hours else round(e.dec_hdr, 6),
        "airmass": round(e.airmass, 4),
        "object": e.object,
        **e.ambient,
    }
    comments = {
        "obstype": "observation type",
        "exptime": "[s] exposure time",
        "date_obs": "UTC start of exposure",
        "mjd_obs": "MJD (UTC) start of exposure",
        "filter_tray": "filter tray in the beam",
        "ra": "telescope pointing RA (optical axis)",
        "dec": "telescope pointing Dec (optical axis)",
        "airmass": "airmass at mid-exposure",
        "object": "target name",
        "ambient_temp": "[C] ambient temperature",
        "humidity": "[%] relative humidity",
        "pressure": "[hPa] atmospheric pressure",
        "wind_speed": "[m/s] wind speed",
        "wind_dir": "[deg] wind direction",
    }
    h["INSTRUME"] = (instrument.name, "instrument")
    h["TELESCOP"] = (instrument.telescope, "telescope")
    for key, value in values.items():
        spec = getattr(m, key, None)
        if spec is not None:
            h[spec.keyword] = (value, comments[key])
    h["EXPNUM"] = (expnum, "exposure number in the night")
    h["OBSSET"] = (obs_set, "observation set")
    h["NEXTEND"] = (instrument.n_extensions, "number of image extensions")
    if e.kind == "focus":
        h["FOCSTEPS"] = (focus[0], "stacked focus: images per frame")
        h["FOCSHIFT"] = (focus[1], "[arcsec] shift between focus images (+y)")
        h["FOCRANGE"] = (focus[2], "[arcsec] defocus FWHM at the sequence ends")
    h["RADESYS"] = "ICRS"
    h["EQUINOX"] = 2000.0
    h["FILENAME"] = filename
    h["ORIGIN"] = "surveydm pixelsim (simulated)"
    return h
