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
    frame (``{amp_num: (ny, nx) int32}``, readout order, ``amp.raw_shape``) and the CCD's
    description completed from the file's headers (pass it to the assembly)."""

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
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            primary = hdul[0].header.copy()
            located = locate_amps(hdul, instrument, ccd_num)
            amps = {
                r.amp.num: np.asarray(cut_amp(hdul[r.hdu].data, r.amp.region), dtype=np.int32)
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
