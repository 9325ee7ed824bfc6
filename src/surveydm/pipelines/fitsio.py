"""FITS input/output of the pipelines: raw amplifier extensions of one CCD, master calibration
mosaics (one extension per CCD, seed 000 section 4) and reduced CCD files (science, weight,
mask). Pixels come back native-endian float32 (converted once here), as the reduction layer
expects; products are written without timestamps so that a re-run writes identical bytes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from surveydm.errors import SurveydmError
from surveydm.instruments import CCD, Instrument
from surveydm.instruments.sections import cut_amp
from surveydm.pipelines.raw_layout import LayoutError, locate_amps, resolved_ccd


class RawFileError(SurveydmError):
    """A raw or product FITS file cannot be read (truncated, corrupt, missing extension)."""


def ccd_extname(ccd_num: int) -> str:
    """Extension name of a CCD in master and reduced mosaics: ``CCD01``..."""
    return f"CCD{ccd_num:02d}"


@dataclass(frozen=True)
class RawCCD:
    """One CCD of a raw file: the primary header, the raw amplifier arrays in the amplifier
    frame (``{amp_num: (ny, nx)}`` native-endian ADU as stored: ``uint16`` for the usual
    16-bit unsigned raw files, see :func:`raw_pixels`; readout order, ``amp.raw_shape``) and
    the CCD's description completed from the file's headers (pass it to the assembly)."""

    header: fits.Header
    amps: dict[int, np.ndarray]
    ccd: CCD


def read_raw_ccd(path: Path, instrument: Instrument, ccd_num: int) -> RawCCD:
    """CCD ``ccd_num`` of a raw file, in any layout the instrument describes (one extension
    per amplifier, per CCD, or the primary HDU; see :mod:`surveydm.pipelines.raw_layout`).

    Raises:
        RawFileError: the file is unreadable or truncated, holds no extension of that CCD, or
            an extension does not fit the instrument's layout.
    """
    try:
        with fits.open(
            path, memmap=False, lazy_load_hdus=True, do_not_scale_image_data=True
        ) as hdul:
            primary = hdul[0].header.copy()
            located = locate_amps(hdul, instrument, ccd_num)
            amps = {
                r.amp.num: raw_pixels(cut_amp(hdul[r.hdu].data, r.amp.region), hdul[r.hdu].header)
                for r in located
            }
    except LayoutError as exc:
        raise RawFileError(f"{path.name}: {exc}") from exc
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise RawFileError(f"{path.name}: cannot read raw mosaic ({exc})") from exc
    if not amps:
        raise RawFileError(f"{path.name}: no extension of CCD {ccd_num}")
    try:
        ccd = resolved_ccd(instrument, ccd_num, located)
    except LayoutError as exc:
        raise RawFileError(f"{path.name}: {exc}") from exc
    return RawCCD(primary, amps, ccd)


#: FITS unsigned-integer conventions: BITPIX -> (BZERO, unsigned dtype, sign bit); FITS
#: standard 4.0, section 5.2.5 (table 11).
_UNSIGNED = {
    16: (32768, np.uint16, np.uint16(0x8000)),
    32: (2147483648, np.uint32, np.uint32(0x80000000)),
}


def raw_pixels(data: np.ndarray, header: fits.Header) -> np.ndarray:
    """Raw ADU of an image read without scaling (``do_not_scale_image_data``), native-endian,
    in one pass over the pixels and at the size they are stored.

    An unsigned 16-bit (32-bit) file is stored as signed integers with ``BZERO = 2**15``
    (``2**31``) and ``BSCALE = 1`` (FITS standard 4.0, section 5.2.5): adding BZERO is flipping
    the sign bit, so the pixels come back ``uint16`` (``uint32``) from one XOR, instead of
    astropy's scaling followed by a conversion to int32 (which read and wrote every pixel
    three times and doubled the bytes the detrending reads). Unscaled data keeps its type;
    any other BSCALE/BZERO gives float64 physical values.

    Args:
        data: (ny, nx) stored values (big-endian, as in the file); header: its HDU's header.
    """
    bscale, bzero = header.get("BSCALE", 1), header.get("BZERO", 0)
    native = data.dtype.newbyteorder("=")
    if bscale == 1 and bzero == 0:
        return np.asarray(data, dtype=native)
    unsigned = _UNSIGNED.get(int(header.get("BITPIX", 0)))
    if bscale == 1 and unsigned is not None and bzero == unsigned[0]:
        _, utype, sign = unsigned
        stored = data.view(np.dtype(utype).newbyteorder(data.dtype.byteorder))
        return np.bitwise_xor(stored, sign, dtype=utype)
    return np.asarray(data, dtype=np.float64) * float(bscale) + float(bzero)


def read_ccd_image(path: Path, ccd_num: int) -> np.ndarray:
    """The float32 image of CCD ``ccd_num`` in a master calibration mosaic.

    Raises:
        RawFileError: the file or the extension is missing or unreadable.
    """
    try:
        with fits.open(path, memmap=False) as hdul:
            return np.asarray(hdul[ccd_extname(ccd_num)].data, dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise RawFileError(f"{path.name}: no readable {ccd_extname(ccd_num)} ({exc})") from exc


def write_ccd_mosaic(
    path: Path,
    images: Mapping[int, np.ndarray],
    *,
    header: Mapping[str, object],
    ccd_headers: Mapping[int, Mapping[str, object]] | None = None,
) -> None:
    """Write a master calibration mosaic: a primary HDU with ``header`` and one float32 image
    extension per CCD (EXTNAME ``CCDnn``)."""
    hdus = [fits.PrimaryHDU(header=_header(header))]
    for num in sorted(images):
        hdr = _header({"CCDNUM": num, **(ccd_headers or {}).get(num, {})})
        hdus.append(
            fits.ImageHDU(np.asarray(images[num], np.float32), header=hdr, name=ccd_extname(num))
        )
    fits.HDUList(hdus).writeto(path, output_verify="exception")


def write_image(path: Path, data: np.ndarray, header: fits.Header | Mapping[str, object]) -> None:
    """Write a single-image FITS file (reduced science, weight or mask)."""
    hdr = header if isinstance(header, fits.Header) else _header(header)
    fits.PrimaryHDU(data, header=hdr).writeto(path, output_verify="exception")


def _header(values: Mapping[str, object]) -> fits.Header:
    hdr = fits.Header()
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, float) and not np.isfinite(value):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        hdr[key] = value
    return hdr
