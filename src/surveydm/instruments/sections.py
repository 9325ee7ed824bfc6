"""FITS sections as raw headers and instrument files write them, and the amplifier frame.

A section is ``"[x1:x2,y1:y2]"``, 1-based and inclusive, x = column (NAXIS1). Ranges may be
reversed (IRAF/NOAO convention): they are written in *readout order*, and the first listed
pixel of ``DATASEC`` lands on the first listed pixel of ``CCDSEC``/``DETSEC``. So
``DATASEC = [1:1024,1:4096]`` with ``DETSEC = [2048:1025,1:4096]`` is an amplifier whose columns
are mirrored on the detector, and ``DATASECB = [2048:1025,1:4096]`` an amplifier that reads an
extension shared with others from its high-x end.

The reduction works in the *amplifier frame*: the amplifier's own raw pixels (data, prescan,
overscan), in readout order, of shape ``raw_shape``, with ``flip_x``/``flip_y`` telling how
its data section maps onto ``ccdsec`` (increasing). :func:`amp_frame` converts a description
in the frame of the extension that holds the amplifier (what the headers and the YAML say)
into that frame; :func:`extension_sections` goes back (the simulator writes the headers
with it); :func:`cut_amp` cuts an amplifier's frame out of an extension's pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_SECTION = re.compile(r"^\[(\d+):(\d+),(\d+):(\d+)\]$")

#: Amplifier keys that are sections in the frame of the holding extension.
SECTION_KEYS = ("datasec", "biassec", "prescan", "ccdsec")


@dataclass(frozen=True)
class Section:
    """A FITS section as written: 1-based inclusive ranges, each possibly reversed."""

    x1: int
    x2: int
    y1: int
    y2: int

    @classmethod
    def parse(cls, text: str) -> Section:
        """Parse ``"[x1:x2,y1:y2]"``.

        Raises:
            ValueError: not a section, or a coordinate below 1.
        """
        m = _SECTION.match(str(text).replace(" ", "").strip("'"))
        if not m:
            raise ValueError(f"not a FITS section '[x1:x2,y1:y2]': {text!r}")
        sec = cls(*(int(g) for g in m.groups()))
        if min(sec.x1, sec.x2, sec.y1, sec.y2) < 1:
            raise ValueError(f"section coordinates are 1-based: {text!r}")
        return sec

    @property
    def reversed_x(self) -> bool:
        """Columns listed from high to low."""
        return self.x2 < self.x1

    @property
    def reversed_y(self) -> bool:
        """Rows listed from high to low."""
        return self.y2 < self.y1

    @property
    def lo(self) -> tuple[int, int]:
        """(x, y) of the low corner, 1-based."""
        return min(self.x1, self.x2), min(self.y1, self.y2)

    @property
    def hi(self) -> tuple[int, int]:
        """(x, y) of the high corner, 1-based."""
        return max(self.x1, self.x2), max(self.y1, self.y2)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) pixels."""
        return self.hi[1] - self.lo[1] + 1, self.hi[0] - self.lo[0] + 1

    @property
    def slices(self) -> tuple[slice, slice]:
        """numpy ``(slice_y, slice_x)``, increasing whatever the written order."""
        (x1, y1), (x2, y2) = self.lo, self.hi
        return slice(y1 - 1, y2), slice(x1 - 1, x2)

    def text(self) -> str:
        """Back to ``"[x1:x2,y1:y2]"``."""
        return f"[{self.x1}:{self.x2},{self.y1}:{self.y2}]"


def parse_section(section: str) -> tuple[slice, slice]:
    """``"[x1:x2,y1:y2]"`` (FITS, 1-based inclusive, ranges in either order) -> numpy
    ``(slice_y, slice_x)`` (increasing).

    Raises:
        ValueError: the string is not a section.
    """
    return Section.parse(section).slices


def section_shape(section: str) -> tuple[int, int]:
    """(ny, nx) of a FITS section."""
    return Section.parse(section).shape


def _bbox(sections: list[Section]) -> Section:
    x1 = min(s.lo[0] for s in sections)
    y1 = min(s.lo[1] for s in sections)
    x2 = max(s.hi[0] for s in sections)
    y2 = max(s.hi[1] for s in sections)
    return Section(x1, x2, y1, y2)


def _to_frame(sec: Section, region: Section, rev_x: bool, rev_y: bool) -> str:
    """``sec`` (extension frame) in the frame of ``region`` read in readout order."""
    (rx1, ry1), (rx2, ry2) = region.lo, region.hi
    (x1, y1), (x2, y2) = sec.lo, sec.hi
    if rev_x:
        x1, x2 = rx2 - x2 + 1, rx2 - x1 + 1
    else:
        x1, x2 = x1 - rx1 + 1, x2 - rx1 + 1
    if rev_y:
        y1, y2 = ry2 - y2 + 1, ry2 - y1 + 1
    else:
        y1, y2 = y1 - ry1 + 1, y2 - ry1 + 1
    return Section(x1, x2, y1, y2).text()


def amp_frame(amp: dict[str, Any], shared: bool) -> dict[str, Any]:
    """An amplifier description in the frame of its extension -> the amplifier frame.

    Args:
        amp: the amplifier's mapping as in the instrument file (``datasec``, ``biassec``,
            ``prescan``, ``ccdsec`` in the holding extension's frame, reversed ranges allowed;
            ``raw_shape`` the extension's (ny, nx), needed when the amplifier is alone in it).
            A mapping that already has ``region`` is in the amplifier frame and comes back as
            it is; so does one whose sections are not all known yet (read from headers).
        shared: the extension holds several amplifiers (one extension per CCD, or the primary
            HDU): the amplifier's frame is then the bounding box of its sections.

    Returns:
        A new mapping with amplifier-frame ``raw_shape``, ``datasec``, ``biassec``,
        ``prescan``, increasing ``ccdsec``, ``flip_x``/``flip_y`` (combined with any given) and
        ``region``: the amplifier's part of the extension, written in readout order.

    Raises:
        ValueError: a section that does not parse, or a shared amplifier without sections.
    """
    if amp.get("region") is not None or amp.get("datasec") is None or amp.get("ccdsec") is None:
        return dict(amp)
    if amp.get("biassec") is None:
        return dict(amp)
    data = Section.parse(amp["datasec"])
    secs = {k: Section.parse(amp[k]) for k in ("datasec", "biassec", "prescan") if amp.get(k)}
    ccd = Section.parse(amp["ccdsec"])
    rev_x, rev_y = data.reversed_x, data.reversed_y
    if shared or amp.get("raw_shape") is None:
        region = _bbox(list(secs.values()))
    else:
        ny, nx = amp["raw_shape"]
        region = Section(1, int(nx), 1, int(ny))
    if not (rev_x or rev_y or shared or ccd.reversed_x or ccd.reversed_y):
        return dict(amp)  # already the amplifier frame: nothing to convert
    out = dict(amp)
    for key, sec in secs.items():
        out[key] = _to_frame(sec, region, rev_x, rev_y)
    (x1, y1), (x2, y2) = ccd.lo, ccd.hi
    out["ccdsec"] = Section(x1, x2, y1, y2).text()
    out["flip_x"] = bool(amp.get("flip_x", False)) ^ ccd.reversed_x
    out["flip_y"] = bool(amp.get("flip_y", False)) ^ ccd.reversed_y
    out["raw_shape"] = list(region.shape)
    rx = (region.hi[0], region.lo[0]) if rev_x else (region.lo[0], region.hi[0])
    ry = (region.hi[1], region.lo[1]) if rev_y else (region.lo[1], region.hi[1])
    out["region"] = Section(rx[0], rx[1], ry[0], ry[1]).text()
    return out


def extension_sections(amp: Any) -> dict[str, str]:
    """The sections of an :class:`~surveydm.instruments.model.Amplifier` in the frame of its
    extension, as a data-acquisition system writes them in the headers (reversed ranges for
    an amplifier read from the high end; a reversed ``ccdsec`` for a mirrored amplifier).

    Returns:
        ``{"datasec", "biassec", "prescan" (when the amplifier has one), "ccdsec"}`` -> text.
    """
    region = Section.parse(amp.region) if amp.region else None
    rev_x = bool(region and region.reversed_x)
    rev_y = bool(region and region.reversed_y)
    out: dict[str, str] = {}
    for key in ("datasec", "biassec", "prescan"):
        text = getattr(amp, key)
        if text is None:
            continue
        if region is None:
            out[key] = text
            continue
        (x1, y1), (x2, y2) = Section.parse(text).lo, Section.parse(text).hi
        (rx1, ry1), (rx2, ry2) = region.lo, region.hi
        xs = (rx2 - x1 + 1, rx2 - x2 + 1) if rev_x else (rx1 + x1 - 1, rx1 + x2 - 1)
        ys = (ry2 - y1 + 1, ry2 - y2 + 1) if rev_y else (ry1 + y1 - 1, ry1 + y2 - 1)
        out[key] = Section(xs[0], xs[1], ys[0], ys[1]).text()
    ccd = Section.parse(amp.ccdsec)
    (x1, y1), (x2, y2) = ccd.lo, ccd.hi
    # the first data pixel read lands on ccdsec's first listed pixel: reversed when flipped
    cx = (x2, x1) if amp.flip_x else (x1, x2)
    cy = (y2, y1) if amp.flip_y else (y1, y2)
    out["ccdsec"] = Section(cx[0], cx[1], cy[0], cy[1]).text()
    return out


def cut_amp(extension: np.ndarray, region: str | None) -> np.ndarray:
    """The amplifier frame (readout order) of an amplifier in ``extension`` (a (ny, nx)
    array): the whole array when ``region`` is None, else its region, flipped where the
    region is written reversed. A view, never a copy."""
    if region is None:
        return extension
    sec = Section.parse(region)
    out = extension[sec.slices]
    if sec.reversed_x:
        out = out[:, ::-1]
    if sec.reversed_y:
        out = out[::-1, :]
    return out


def place_amp(extension: np.ndarray, region: str | None, frame: np.ndarray) -> None:
    """Write an amplifier frame into ``extension`` (the inverse of :func:`cut_amp`)."""
    if region is None:
        extension[...] = frame
        return
    sec = Section.parse(region)
    if sec.reversed_x:
        frame = frame[:, ::-1]
    if sec.reversed_y:
        frame = frame[::-1, :]
    extension[sec.slices] = frame
