"""Reading a raw exposure for registration: the primary and extension headers through the
instrument description's keyword mapping (:attr:`surveydm.instruments.Instrument.header`),
and quick pixel statistics of each amplifier from a strided subsample of its data section read
through a memory map (see :mod:`surveydm.pipelines.register`)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time

from surveydm.errors import SurveydmError
from surveydm.instruments import HeaderMapping, Instrument, read_keyword
from surveydm.instruments.sections import cut_amp
from surveydm.pipelines.raw_layout import LayoutError, RawAmp, locate_amps

#: Target number of pixels sampled per amplifier data section.
SAMPLE_PIXELS = 40_000


class RegistrationError(SurveydmError):
    """A raw file cannot be registered (unreadable or truncated FITS, missing keyword, unknown
    observation type or filter tray, extensions not matching the instrument). The message
    names the file and the problem; the file stays in the archive, the rest of the obs set
    goes on."""

    def __init__(self, filename: str, problem: str):
        self.filename, self.problem = filename, problem
        super().__init__(f"{filename}: {problem}")


class MissingKeyword(RegistrationError):
    """A header lacks a keyword the instrument description requires."""

    def __init__(self, filename: str, keyword: str, where: str, item: str):
        self.keyword = keyword
        super().__init__(filename, f"{where} has no {keyword} keyword ({item}), which is required")


@dataclass
class AmpStats:
    """Header values and a pixel subsample of one amplifier of a raw exposure."""

    ccd_num: int
    amp_num: int
    ext: int
    naxis1: int
    naxis2: int
    gain: float | None
    rdnoise: float | None
    sample: np.ndarray  # float64 subsample of the data section, ADU
    overscan: float | None


def _kw(header: Any, spec: Any, item: str, filename: str, where: str) -> Any:
    try:
        return read_keyword(header, spec, item)
    except KeyError:
        raise MissingKeyword(filename, spec.keyword, where, item) from None
    except ValueError as exc:
        raise RegistrationError(filename, f"{where}: bad {spec.keyword} ({exc})") from None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _from_date(hdr: Any, mapping: HeaderMapping) -> datetime:
    """DATE-OBS as date and time, or as a date completed by TIME-OBS / UT. Raises ValueError."""
    spec = mapping.date_obs
    if spec is None or spec.keyword not in hdr:
        raise ValueError(f"no {spec.keyword if spec else 'DATE-OBS'}")
    text = str(hdr[spec.keyword]).strip()
    if len(text) == 10 and mapping.time_obs is not None:
        if mapping.time_obs.keyword not in hdr:
            raise ValueError(f"{spec.keyword} {text!r} has no time and there is no "
                             f"{mapping.time_obs.keyword}")  # fmt: skip
        text = f"{text}T{str(hdr[mapping.time_obs.keyword]).strip()}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{spec.keyword} {text!r} is not an ISO date and time") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _mjd(hdr: Any, mapping: HeaderMapping) -> float:
    """MJD-OBS. Raises ValueError when absent or not an MJD."""
    spec = mapping.mjd_obs
    if spec is None or spec.keyword not in hdr:
        raise ValueError(f"no {spec.keyword if spec else 'MJD-OBS'}")
    mjd = _float(hdr[spec.keyword])
    if mjd is None or not 10_000 < mjd < 100_000:
        raise ValueError(f"{spec.keyword} {hdr[spec.keyword]!r} is not an MJD")
    return mjd


def _from_mjd(hdr: Any, mapping: HeaderMapping) -> datetime:
    """MJD-OBS as a UTC datetime. Raises ValueError."""
    return Time(_mjd(hdr, mapping), format="mjd", scale="utc").to_datetime(timezone=UTC)


def observation_time(hdr: Any, mapping: HeaderMapping, filename: str) -> tuple[datetime, float]:
    """When the exposure started: (UTC datetime, MJD), from the first valid source of
    ``mapping.time_order`` (``date_obs``: DATE-OBS with date and time, or a date with
    TIME-OBS/UT; ``mjd_obs``: MJD-OBS). The MJD is MJD-OBS when the header has a valid one.

    Raises:
        RegistrationError: no source is valid (the message gives each one's problem).
    """
    problems = []
    for source in mapping.time_order:
        try:
            dt = _from_date(hdr, mapping) if source == "date_obs" else _from_mjd(hdr, mapping)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        try:
            mjd = _mjd(hdr, mapping)
        except ValueError:
            mjd = float(Time(dt).mjd)
        return dt, mjd
    raise RegistrationError(filename, "no valid observation time: " + "; ".join(problems))


def _stride(shape: tuple[int, int]) -> int:
    return max(1, int(math.sqrt(shape[0] * shape[1] / SAMPLE_PIXELS)))


def _check_complete(hdul: fits.HDUList, filename: str, file_size: int) -> None:
    for ext in range(len(hdul)):
        info = hdul.fileinfo(ext)
        if info["datLoc"] + info["datSpan"] > file_size:
            raise RegistrationError(
                filename,
                f"truncated FITS file: extension {ext} ends at byte "
                f"{info['datLoc'] + info['datSpan']}, the file has {file_size}",
            )


def _amp_stats(r: RawAmp, data: np.ndarray, hdr: Any, filename: str) -> AmpStats:
    """Quick statistics of one amplifier (``data``: its HDU's pixels, scaled by hand)."""
    amp = r.amp
    frame = cut_amp(data, amp.region)
    if tuple(frame.shape) != tuple(amp.raw_shape):
        raise RegistrationError(
            filename,
            f"{r.where}: amplifier {amp.name} is {frame.shape[0]} x {frame.shape[1]} pixels, "
            f"the instrument says raw_shape {tuple(amp.raw_shape)}",
        )
    (dy, dx), (by, bx) = amp.data_slices, amp.bias_slices
    bscale, bzero = float(hdr.get("BSCALE", 1.0)), float(hdr.get("BZERO", 0.0))
    step = _stride((dy.stop - dy.start, dx.stop - dx.start))
    sample = frame[dy, dx][::step, ::step].astype(np.float64) * bscale + bzero
    ostep = max(1, step // 2)
    bias = frame[by, bx][::ostep].astype(np.float64) * bscale + bzero
    overscan = float(np.median(bias)) if bias.size else None
    return AmpStats(
        r.ccd_num, amp.num, r.hdu, int(frame.shape[1]), int(frame.shape[0]),
        amp.gain, amp.read_noise, sample, overscan,
    )  # fmt: skip


def _read_amps(
    hdul: fits.HDUList, inst: Instrument, filename: str, file_size: int
) -> list[AmpStats]:
    _check_complete(hdul, filename, file_size)
    try:
        located = locate_amps(hdul, inst)
    except LayoutError as exc:
        raise RegistrationError(filename, str(exc)) from None
    amps: list[AmpStats] = []
    seen: set[tuple[int, int]] = set()
    for r in located:
        key = (r.ccd_num, r.amp.num)
        if key in seen:
            raise RegistrationError(
                filename, f"{r.where}: CCD {key[0]} amplifier {key[1]} appears twice"
            )
        seen.add(key)
        data = hdul[r.hdu].data
        if data is None or data.ndim != 2:
            raise RegistrationError(filename, f"{r.where} holds no 2-d image")
        amps.append(_amp_stats(r, data, hdul[r.hdu].header, filename))
    expected = {(c.num, a.num) for c in inst.ccds for a in c.amplifiers}
    if seen != expected:
        missing = sorted(expected - seen)
        raise RegistrationError(
            filename,
            f"{len(seen)} amplifiers found, instrument {inst.name} has {len(expected)}; "
            f"missing (CCD, amp) {missing[:6]}{'...' if len(missing) > 6 else ''}"
            " (truncated file?)",
        )
    return amps


@dataclass
class RawExposure:
    """A raw exposure read for registration: its kind, mosaic header values (by the
    instrument's keyword names), amplifiers and number of extensions."""

    kind: str
    values: dict[str, Any]
    amps: list[AmpStats]
    nextend: int


def read_raw_exposure(path: Path, inst: Instrument, filename: str) -> RawExposure:
    """Headers and amplifier statistics of a raw mosaic. Raises RegistrationError."""
    file_size = path.stat().st_size
    if file_size == 0 or file_size % 2880:
        raise RegistrationError(
            filename, f"not a complete FITS file: {file_size} bytes is not a multiple of 2880"
        )
    mapping = inst.header
    try:
        with (
            warnings.catch_warnings(),
            fits.open(path, memmap=True, do_not_scale_image_data=True, mode="readonly") as hdul,
        ):
            warnings.simplefilter("ignore")
            hdul.readall()
            hdr = hdul[0].header
            where = "primary header"
            obstype = _kw(hdr, mapping.obstype, "observation type", filename, where)
            try:
                kind = inst.kind_of(str(obstype))
            except KeyError as exc:
                raise RegistrationError(filename, str(exc.args[0])) from None
            values: dict[str, Any] = {
                "exptime": _float(_kw(hdr, mapping.exptime, "exposure time", filename, where)),
                "filter_tray": _kw(hdr, mapping.filter_tray, "filter tray", filename, where),
                "ra": _float(_kw(hdr, mapping.ra, "right ascension", filename, where)),
                "dec": _float(_kw(hdr, mapping.dec, "declination", filename, where)),
                "airmass": _float(_kw(hdr, mapping.airmass, "airmass", filename, where)),
                "object": _kw(hdr, mapping.object, "object", filename, where),
                "amb_temp": _float(_kw(hdr, mapping.ambient_temp, "ambient", filename, where)),
                "humidity": _float(_kw(hdr, mapping.humidity, "humidity", filename, where)),
                "pressure": _float(_kw(hdr, mapping.pressure, "pressure", filename, where)),
                "wind_spd": _float(_kw(hdr, mapping.wind_speed, "wind speed", filename, where)),
                "wind_dir": _float(_kw(hdr, mapping.wind_dir, "wind direction", filename, where)),
            }
            values["date_obs"], values["mjd_obs"] = observation_time(hdr, mapping, filename)
            amps = _read_amps(hdul, inst, filename, file_size)
            nextend = len(hdul) - 1
    except SurveydmError:
        raise
    except (OSError, ValueError, TypeError, IndexError, fits.VerifyError) as exc:
        raise RegistrationError(filename, f"not a readable FITS file ({exc})") from None
    tray = values["filter_tray"]
    values["filter_tray"] = None if tray in (None, "") else str(tray).strip()
    values["object"] = None if values["object"] in (None, "") else str(values["object"])
    return RawExposure(kind, values, amps, nextend)
