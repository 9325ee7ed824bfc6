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
from surveydm.instruments import Instrument, parse_section, read_keyword

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


def _parse_date(value: Any, filename: str) -> datetime:
    try:
        dt = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise RegistrationError(filename, f"DATE-OBS {value!r} is not an ISO date") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _section(header: Any, key: str, fallback: str, filename: str, ext: int) -> tuple:
    text = header.get(key, fallback)
    try:
        return parse_section(str(text))
    except ValueError as exc:
        raise RegistrationError(filename, f"extension {ext}: bad {key} ({exc})") from None


def _stride(shape: tuple[int, int]) -> int:
    return max(1, int(math.sqrt(shape[0] * shape[1] / SAMPLE_PIXELS)))


def _read_amps(
    hdul: fits.HDUList, inst: Instrument, filename: str, file_size: int
) -> list[AmpStats]:
    mapping = inst.header
    amps: list[AmpStats] = []
    seen: set[tuple[int, int]] = set()
    for ext in range(1, len(hdul)):
        info = hdul.fileinfo(ext)
        if info["datLoc"] + info["datSpan"] > file_size:
            raise RegistrationError(
                filename,
                f"truncated FITS file: extension {ext} ends at byte "
                f"{info['datLoc'] + info['datSpan']}, the file has {file_size}",
            )
        hdu = hdul[ext]
        hdr = hdu.header
        where = f"extension {ext} header"
        ccd_num = _kw(hdr, mapping.ccd_num, "CCD number", filename, where)
        amp_num = _kw(hdr, mapping.amp_num, "amplifier number", filename, where)
        try:
            ccd_num, amp_num = int(ccd_num), int(amp_num)
            amp = inst.ccd(ccd_num).amp(amp_num)
        except (KeyError, TypeError, ValueError):
            raise RegistrationError(
                filename,
                f"extension {ext}: CCD {ccd_num} amplifier {amp_num} is not in instrument "
                f"{inst.name}",
            ) from None
        if (ccd_num, amp_num) in seen:
            raise RegistrationError(
                filename, f"extension {ext}: CCD {ccd_num} amplifier {amp_num} appears twice"
            )
        seen.add((ccd_num, amp_num))
        data = hdu.data
        if data is None or data.ndim != 2:
            raise RegistrationError(filename, f"extension {ext} holds no 2-d image")
        dy, dx = _section(hdr, "DATASEC", amp.datasec, filename, ext)
        by, bx = _section(hdr, "BIASSEC", amp.biassec, filename, ext)
        if dy.stop > data.shape[0] or dx.stop > data.shape[1]:
            raise RegistrationError(filename, f"extension {ext}: DATASEC outside the image")
        bscale, bzero = float(hdr.get("BSCALE", 1.0)), float(hdr.get("BZERO", 0.0))
        step = _stride((dy.stop - dy.start, dx.stop - dx.start))
        sample = data[dy, dx][::step, ::step].astype(np.float64) * bscale + bzero
        overscan = None
        if by.stop <= data.shape[0] and bx.stop <= data.shape[1]:
            ostep = max(1, step // 2)
            bias = data[by, bx][::ostep].astype(np.float64) * bscale + bzero
            overscan = float(np.median(bias)) if bias.size else None
        amps.append(
            AmpStats(
                ccd_num,
                amp_num,
                ext,
                int(data.shape[1]),
                int(data.shape[0]),
                _float(hdr.get("GAIN", amp.gain)),
                _float(hdr.get("RDNOISE", amp.read_noise)),
                sample,
                overscan,
            )
        )
    expected = {(c.num, a.num) for c in inst.ccds for a in c.amplifiers}
    if seen != expected:
        missing = sorted(expected - seen)
        raise RegistrationError(
            filename,
            f"{len(seen)} amplifier extensions, instrument {inst.name} has {len(expected)}; "
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
                "date_obs": _parse_date(
                    _kw(hdr, mapping.date_obs, "date of observation", filename, where), filename
                ),
                "filter_tray": _kw(hdr, mapping.filter_tray, "filter tray", filename, where),
                "ra": _float(_kw(hdr, mapping.ra, "right ascension", filename, where)),
                "dec": _float(_kw(hdr, mapping.dec, "declination", filename, where)),
                "mjd_obs": _float(_kw(hdr, mapping.mjd_obs, "MJD", filename, where)),
                "airmass": _float(_kw(hdr, mapping.airmass, "airmass", filename, where)),
                "object": _kw(hdr, mapping.object, "object", filename, where),
                "amb_temp": _float(_kw(hdr, mapping.ambient_temp, "ambient", filename, where)),
                "humidity": _float(_kw(hdr, mapping.humidity, "humidity", filename, where)),
                "pressure": _float(_kw(hdr, mapping.pressure, "pressure", filename, where)),
                "wind_spd": _float(_kw(hdr, mapping.wind_speed, "wind speed", filename, where)),
                "wind_dir": _float(_kw(hdr, mapping.wind_dir, "wind direction", filename, where)),
            }
            amps = _read_amps(hdul, inst, filename, file_size)
            nextend = len(hdul) - 1
    except SurveydmError:
        raise
    except (OSError, ValueError, TypeError, IndexError, fits.VerifyError) as exc:
        raise RegistrationError(filename, f"not a readable FITS file ({exc})") from None
    if values["mjd_obs"] is None:
        values["mjd_obs"] = float(Time(values["date_obs"]).mjd)
    tray = values["filter_tray"]
    values["filter_tray"] = None if tray in (None, "") else str(tray).strip()
    values["object"] = None if values["object"] in (None, "") else str(values["object"])
    return RawExposure(kind, values, amps, nextend)
