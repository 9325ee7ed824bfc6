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

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from surveydm.instruments.sections import amp_frame, parse_section, section_shape

ObsKind = Literal["bias", "dark", "flat", "science", "test", "focus"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Amplifier(_Strict):
    """One amplifier (readout port) of a CCD: raw geometry and electronic properties.

    In memory the geometry is in the amplifier frame (see :mod:`surveydm.instruments.sections`):
    an instrument file may describe it in the frame of the extension holding the amplifier
    (reversed ranges, several amplifiers per extension), :class:`Instrument` converts it.
    Sections, gain, read noise and saturation left out (None) are read from each raw file's
    headers (:attr:`RawLayout.keywords`); :meth:`complete` says whether any is.
    """

    num: int = Field(ge=1)
    name: str
    raw_shape: tuple[int, int] | None = Field(
        None, description="(ny, nx) of the amplifier's raw pixels incl. prescan and overscan"
    )
    datasec: str | None = Field(None, description="image pixels in the raw amplifier frame")
    biassec: str | None = Field(None, description="serial overscan in the raw amplifier frame")
    prescan: str | None = Field(None, description="serial prescan in the raw amplifier frame")
    ccdsec: str | None = Field(None, description="where DATASEC goes in the assembled CCD")
    region: str | None = Field(
        None,
        description="the amplifier's part of its extension, in readout order (None: all of it)",
    )
    flip_x: bool = False
    flip_y: bool = False
    gain: float | None = Field(None, gt=0, description="e-/ADU")
    read_noise: float | None = Field(None, ge=0, description="e- rms")
    saturation: float | None = Field(None, gt=0, description="ADU, raw value where it saturates")
    bias_level: float = Field(1000.0, ge=0, description="typical bias level, ADU")
    nonlinearity: list[float] = Field(default_factory=list, description="c_1, c_2, ... (1/ADU^k)")

    @field_validator("datasec", "biassec", "prescan", "ccdsec", "region")
    @classmethod
    def _valid_section(cls, v: str | None) -> str | None:
        if v is not None:
            parse_section(v)
        return v

    @property
    def complete(self) -> bool:
        """True when geometry and electronics are all given (nothing to read from headers)."""
        return None not in (
            self.raw_shape, self.datasec, self.biassec, self.ccdsec,
            self.gain, self.read_noise, self.saturation,
        )  # fmt: skip

    @model_validator(mode="after")
    def _fits(self) -> Amplifier:
        if self.raw_shape is None or self.datasec is None or self.ccdsec is None:
            return self
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
        if any(a.ccdsec is None for a in self.amplifiers):
            return self  # CCDSEC from the headers: checked when a raw file is read
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

    @property
    def complete(self) -> bool:
        """True when no amplifier value is left to the headers."""
        return all(a.complete for a in self.amplifiers)

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
    date_obs: KeywordSpec | None = KeywordSpec(keyword="DATE-OBS")
    time_obs: KeywordSpec | None = Field(
        None, description="time of day (TIME-OBS, UT) when DATE-OBS holds only the date"
    )
    mjd_obs: KeywordSpec | None = None
    time_order: list[Literal["date_obs", "mjd_obs"]] = Field(
        default=["date_obs", "mjd_obs"],
        min_length=1,
        description="where the observation time comes from, first that is valid",
    )
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


class Identifier(_Strict):
    """How an extension says which CCD (or amplifier) it holds: the value of a header keyword,
    an integer or a string (``CCDNUM = 3``, ``CCDNAME = 'C1'``, ``EXTNAME = 'im3'``), mapped to
    the CCD (amplifier) number by ``values``, or, without ``values``, equal to its number or
    its name; with no ``keyword``, the order of the extensions (the description's order)."""

    keyword: str | None = None
    values: dict[str, int] = Field(
        default_factory=dict, description="header value (stripped text) -> CCD/amp number"
    )


class LayoutKeywords(_Strict):
    """Header keywords of the per-amplifier values the instrument file leaves out; ``{amp}``
    is the amplifier's name when several amplifiers share an extension, else empty."""

    datasec: str = "DATASEC{amp}"
    biassec: str = "BIASSEC{amp}"
    prescan: str | None = None
    ccdsec: str = "CCDSEC{amp}"
    gain: str = "GAIN{amp}"
    read_noise: str = "RDNOISE{amp}"
    saturation: str = "SATURATE"

    def keyword(self, item: str, amp_name: str, shared: bool) -> str | None:
        """The header keyword of ``item`` for an amplifier, or None."""
        pattern = getattr(self, item)
        return None if pattern is None else pattern.format(amp=amp_name if shared else "")


class RawLayout(_Strict):
    """How a raw file holds the focal plane: one image extension per amplifier (PAUCam,
    NOAO Mosaic), one per CCD holding all its amplifiers (DECam), or one CCD in the
    primary HDU (T80Cam); and how each extension names its CCD and amplifier."""

    extensions: Literal["amplifier", "ccd", "primary"] = "amplifier"
    ccd: Identifier | None = Field(None, description="default: header.ccd_num's keyword")
    amp: Identifier | None = Field(
        None, description="amplifier layout only; default: header.amp_num's keyword"
    )
    keywords: LayoutKeywords = LayoutKeywords()

    @property
    def shared(self) -> bool:
        """Several amplifiers share one extension (or the primary HDU)."""
        return self.extensions != "amplifier"


def _amp_frame_or_as_is(amp: Any, shared: bool) -> Any:
    """The amplifier frame of ``amp``; as it is when it does not parse (field validation
    then names the bad field)."""
    if not isinstance(amp, dict):
        return amp
    try:
        return amp_frame(amp, shared)
    except (ValueError, TypeError, KeyError):
        return amp


def _amp_frames(data: Any) -> Any:
    """Convert every amplifier of an instrument mapping to the amplifier frame (before
    validation; see :func:`surveydm.instruments.sections.amp_frame`)."""
    if not isinstance(data, dict) or not isinstance(data.get("ccds"), list):
        return data
    layout = data.get("layout") or {}
    shared = isinstance(layout, dict) and layout.get("extensions", "amplifier") != "amplifier"
    ccds = []
    for ccd in data["ccds"]:
        if isinstance(ccd, dict) and isinstance(ccd.get("amplifiers"), list):
            amps = [_amp_frame_or_as_is(a, shared) for a in ccd["amplifiers"]]
            ccd = {**ccd, "amplifiers": amps}
        ccds.append(ccd)
    return {**data, "ccds": ccds}


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
    trays: list[FilterTray] = Field(
        default_factory=list, description="none: one filter for the focal plane, named by header"
    )
    header: HeaderMapping
    layout: RawLayout = RawLayout()

    @model_validator(mode="before")
    @classmethod
    def _in_amp_frame(cls, data: Any) -> Any:
        return _amp_frames(data)

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
        if self.layout.extensions == "primary" and len(self.ccds) != 1:
            raise ValueError("layout.extensions 'primary' holds one CCD; this camera has "
                             f"{len(self.ccds)}")  # fmt: skip
        return self

    @property
    def n_extensions(self) -> int:
        """Image extensions of a raw file (0: the CCD is in the primary HDU)."""
        return {"amplifier": self.n_amplifiers, "ccd": len(self.ccds), "primary": 0}[
            self.layout.extensions
        ]

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

    @property
    def tray_names(self) -> list[str]:
        """Names the filter-tray keyword can take: the trays, or the filters when the camera
        has no trays (one filter for the whole focal plane)."""
        return [t.name for t in self.trays] if self.trays else [f.name for f in self.filters]

    @property
    def ccd_identifier(self) -> Identifier:
        """How an extension names its CCD (:attr:`layout`, else ``header.ccd_num``)."""
        return self.layout.ccd or Identifier(keyword=self.header.ccd_num.keyword)

    @property
    def amp_identifier(self) -> Identifier:
        """How an extension names its amplifier (amplifier layout)."""
        return self.layout.amp or Identifier(keyword=self.header.amp_num.keyword)

    def tray(self, name: str) -> FilterTray:
        """The filter tray called ``name``; for a camera without trays, the filter called
        ``name`` on every CCD. Raises KeyError."""
        for t in self.trays:
            if t.name == name:
                return t
        if not self.trays and any(f.name == name for f in self.filters):
            return FilterTray(name=name, filters={c.num: name for c in self.ccds})
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
