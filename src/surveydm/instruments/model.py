"""Camera descriptions: the pydantic model a YAML instrument file is validated into.

An instrument file describes the focal plane (CCDs with position, rotation, size), each CCD's
amplifiers (raw geometry as FITS sections, gain, read noise, saturation, non-linearity,
crosstalk), the filters and filter trays, and the header keyword mapping through which
surveydm reads any camera's raw files. Conventions:

* Sections are FITS-style, 1-based, inclusive: ``"[x1:x2,y1:y2]"``, x = column (NAXIS1).
* An amplifier's raw extension is ``raw_shape`` = (ny, nx) pixels including prescan and
  overscan; ``datasec`` locates the image pixels in it and ``ccdsec`` where they go in the
  assembled CCD (``flip_x`` / ``flip_y`` when the amplifier reads out from the opposite corner,
  so raw column 1 is the CCD's last column of that section).
* Crosstalk: in readout order (raw amplifier coordinates), victim_raw += coeff * source_raw,
  both in ADU above bias.
* Non-linearity: ADU_measured = ADU_linear * (1 + sum_k c_k * ADU_linear**k), k = 1, 2, ...
* CCD position: ``center_mm`` on the focal plane relative to the optical axis; the plate scale
  follows from ``pixel_scale_arcsec`` / ``pixel_size_um``. Radial distortion: a point at true
  angular radius r (deg) from the axis lands at r * (1 + sum_k radial[k] * r**(2k+2)).
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SECTION = re.compile(r"^\[(\d+):(\d+),(\d+):(\d+)\]$")

ObsKind = Literal["bias", "dark", "flat", "science", "test", "focus"]


def parse_section(section: str) -> tuple[slice, slice]:
    """``"[x1:x2,y1:y2]"`` (FITS, 1-based inclusive) -> numpy ``(slice_y, slice_x)``.

    Raises:
        ValueError: the string is not a section or its ranges are reversed.
    """
    m = _SECTION.match(section.replace(" ", ""))
    if not m:
        raise ValueError(f"not a FITS section '[x1:x2,y1:y2]': {section!r}")
    x1, x2, y1, y2 = (int(g) for g in m.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        raise ValueError(f"section ranges must be 1-based and increasing: {section!r}")
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def section_shape(section: str) -> tuple[int, int]:
    """(ny, nx) of a FITS section."""
    sy, sx = parse_section(section)
    return sy.stop - sy.start, sx.stop - sx.start


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Amplifier(_Strict):
    """One amplifier (readout port) of a CCD: raw geometry and electronic properties."""

    num: int = Field(ge=1)
    name: str
    raw_shape: tuple[int, int] = Field(description="(ny, nx) of the raw extension, pixels")
    datasec: str = Field(description="image pixels in the raw extension")
    biassec: str = Field(description="serial overscan in the raw extension")
    prescan: str | None = Field(None, description="serial prescan in the raw extension")
    ccdsec: str = Field(description="where DATASEC goes in the assembled CCD")
    flip_x: bool = False
    flip_y: bool = False
    gain: float = Field(gt=0, description="e-/ADU")
    read_noise: float = Field(ge=0, description="e- rms")
    saturation: float = Field(gt=0, description="ADU, raw value where the pixel saturates")
    bias_level: float = Field(1000.0, ge=0, description="typical bias level, ADU")
    nonlinearity: list[float] = Field(default_factory=list, description="c_1, c_2, ... (1/ADU^k)")

    @field_validator("datasec", "biassec", "prescan", "ccdsec")
    @classmethod
    def _valid_section(cls, v: str | None) -> str | None:
        if v is not None:
            parse_section(v)
        return v

    @model_validator(mode="after")
    def _fits(self) -> Amplifier:
        ny, nx = self.raw_shape
        for name in ("datasec", "biassec", "prescan"):
            sec = getattr(self, name)
            if sec is None:
                continue
            sy, sx = parse_section(sec)
            if sy.stop > ny or sx.stop > nx:
                raise ValueError(
                    f"amp {self.name}: {name} {sec} outside raw_shape {self.raw_shape}"
                )
        if section_shape(self.datasec) != section_shape(self.ccdsec):
            raise ValueError(f"amp {self.name}: datasec and ccdsec differ in shape")
        return self

    @cached_property
    def data_slices(self) -> tuple[slice, slice]:
        """numpy slices of DATASEC in the raw array."""
        return parse_section(self.datasec)

    @cached_property
    def bias_slices(self) -> tuple[slice, slice]:
        """numpy slices of BIASSEC (overscan) in the raw array."""
        return parse_section(self.biassec)

    @cached_property
    def ccd_slices(self) -> tuple[slice, slice]:
        """numpy slices of CCDSEC in the assembled CCD array."""
        return parse_section(self.ccdsec)


class Crosstalk(_Strict):
    """victim_raw += coeff * source_raw (ADU above bias, readout order)."""

    source: int = Field(ge=1, description="amplifier number")
    victim: int = Field(ge=1, description="amplifier number")
    coeff: float


class CCD(_Strict):
    """One CCD of the focal plane."""

    num: int = Field(ge=1)
    name: str
    shape: tuple[int, int] = Field(description="(ny, nx) of the assembled, trimmed CCD, pixels")
    center_mm: tuple[float, float] = Field(description="(x, y) of the CCD centre, mm")
    rotation_deg: float = 0.0
    dark_current: float = Field(0.0, ge=0, description="e-/s/pixel")
    amplifiers: list[Amplifier]
    crosstalk: list[Crosstalk] = Field(default_factory=list)

    @model_validator(mode="after")
    def _amps_tile_ccd(self) -> CCD:
        nums = [a.num for a in self.amplifiers]
        if len(set(nums)) != len(nums):
            raise ValueError(f"CCD {self.name}: duplicate amplifier numbers {nums}")
        covered = sum(
            section_shape(a.ccdsec)[0] * section_shape(a.ccdsec)[1] for a in self.amplifiers
        )
        if covered != self.shape[0] * self.shape[1]:
            raise ValueError(
                f"CCD {self.name}: amplifier ccdsec areas do not tile shape {self.shape}"
            )
        for xt in self.crosstalk:
            if xt.source not in nums or xt.victim not in nums:
                raise ValueError(f"CCD {self.name}: crosstalk names unknown amplifier")
        return self

    def amp(self, num: int) -> Amplifier:
        """The amplifier numbered ``num``. Raises KeyError."""
        for a in self.amplifiers:
            if a.num == num:
                return a
        raise KeyError(f"CCD {self.name} has no amplifier {num}")


class Filter(_Strict):
    """A filter: passband and the photometric system values the simulator and QC use."""

    name: str
    kind: Literal["narrow", "broad"] = "broad"
    wavelength_nm: float = Field(gt=0, description="central wavelength")
    width_nm: float = Field(gt=0, description="FWHM of the passband")
    zeropoint: float = Field(25.0, description="AB mag giving 1 e-/s at airmass 0")
    extinction: float = Field(0.1, ge=0, description="mag per airmass")
    sky_mag: float = Field(21.0, description="dark-sky brightness, AB mag/arcsec^2")
    fringing: bool = Field(False, description="needs a fringe correction")


class FilterTray(_Strict):
    """A filter tray: which filter covers each CCD when the tray is in the beam."""

    name: str
    filters: dict[int, str] = Field(description="CCD number -> filter name")


class KeywordSpec(_Strict):
    """Where a header value lives: FITS keyword, its unit and a default when absent."""

    keyword: str
    unit: Literal["deg", "hourangle", "none"] = "none"
    required: bool = True
    default: Any = None


class HeaderMapping(_Strict):
    """Header keywords carrying each metadata item (primary HDU unless ``extension`` says so)."""

    obstype: KeywordSpec
    exptime: KeywordSpec
    date_obs: KeywordSpec
    mjd_obs: KeywordSpec | None = None
    filter_tray: KeywordSpec
    ra: KeywordSpec
    dec: KeywordSpec
    airmass: KeywordSpec | None = None
    object: KeywordSpec | None = None
    ambient_temp: KeywordSpec | None = None
    humidity: KeywordSpec | None = None
    pressure: KeywordSpec | None = None
    wind_speed: KeywordSpec | None = None
    wind_dir: KeywordSpec | None = None
    ccd_num: KeywordSpec = KeywordSpec(keyword="CCDNUM")
    amp_num: KeywordSpec = KeywordSpec(keyword="AMPNUM")
    obstype_values: dict[str, ObsKind] = Field(
        description="raw OBSTYPE value (upper case) -> kind: bias, dark, flat, science, test, focus"
    )


class Instrument(_Strict):
    """A camera: focal plane, amplifiers, filters, trays and header mapping."""

    name: str
    description: str = ""
    telescope: str = ""
    pixel_scale_arcsec: float = Field(gt=0, description="arcsec/pixel at the field centre")
    pixel_size_um: float = Field(gt=0)
    distortion_radial: list[float] = Field(default_factory=list, description="see module doc")
    ccds: list[CCD]
    filters: list[Filter]
    trays: list[FilterTray]
    header: HeaderMapping

    @model_validator(mode="after")
    def _consistent(self) -> Instrument:
        ccd_nums = {c.num for c in self.ccds}
        if len(ccd_nums) != len(self.ccds):
            raise ValueError("duplicate CCD numbers")
        names = {f.name for f in self.filters}
        for tray in self.trays:
            if set(tray.filters) != ccd_nums:
                raise ValueError(
                    f"tray {tray.name}: must give a filter for every CCD {sorted(ccd_nums)}"
                )
            unknown = set(tray.filters.values()) - names
            if unknown:
                raise ValueError(f"tray {tray.name}: unknown filters {sorted(unknown)}")
        return self

    @property
    def plate_scale_arcsec_per_mm(self) -> float:
        """arcsec per mm on the focal plane."""
        return self.pixel_scale_arcsec / (self.pixel_size_um / 1000.0)

    @property
    def n_amplifiers(self) -> int:
        """Total number of amplifier extensions in a raw mosaic."""
        return sum(len(c.amplifiers) for c in self.ccds)

    def ccd(self, num: int) -> CCD:
        """The CCD numbered ``num``. Raises KeyError."""
        for c in self.ccds:
            if c.num == num:
                return c
        raise KeyError(f"{self.name} has no CCD {num}")

    def filter(self, name: str) -> Filter:
        """The filter called ``name``. Raises KeyError."""
        for f in self.filters:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no filter {name!r}")

    def tray(self, name: str) -> FilterTray:
        """The filter tray called ``name``. Raises KeyError."""
        for t in self.trays:
            if t.name == name:
                return t
        raise KeyError(f"{self.name} has no filter tray {name!r}")

    def kind_of(self, obstype: str) -> ObsKind:
        """Classify a raw OBSTYPE value. Raises KeyError for an unknown value."""
        try:
            return self.header.obstype_values[obstype.strip().upper()]
        except KeyError:
            raise KeyError(
                f"{self.name}: unknown observation type {obstype!r}; "
                f"known: {sorted(self.header.obstype_values)}"
            ) from None
