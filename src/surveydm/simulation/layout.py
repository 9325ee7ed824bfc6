"""The raw extensions of one CCD as the camera's data acquisition writes them, in the layout
its instrument file declares (:class:`surveydm.instruments.RawLayout`): one image extension per
amplifier, one per CCD holding every amplifier (per-amplifier section keywords such as
``DATASECA``), or the CCD in the primary HDU. Identifiers (``CCDNUM = 3``,
``DETPOS = 'N1'``, ``AMPNAME = 'L'``) and sections (reversed ranges for an amplifier read from
the high end or mirrored) are written so that :mod:`surveydm.pipelines.raw_layout` reads them
back."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from surveydm.instruments import CCD, Amplifier, Identifier, Instrument
from surveydm.instruments.sections import Section, extension_sections, place_amp


def identifier_value(ident: Identifier, num: int, name: str, int_keyword: str) -> object:
    """What a header holds to name CCD (amplifier) ``num``: the mapped value when the
    instrument file maps values, the number for the integer keyword (``CCDNUM``/``AMPNUM``),
    else the name."""
    for value, n in ident.values.items():
        if n == num:
            return value
    return num if ident.keyword == int_keyword else name


def _amp_keywords(inst: Instrument, h: fits.Header, amp: Amplifier, shared: bool) -> None:
    kw = inst.layout.keywords
    comments = {
        "datasec": "image pixels (readout order)", "biassec": "serial overscan",
        "prescan": "serial prescan", "ccdsec": "where DATASEC goes in the CCD",
    }  # fmt: skip
    for item, text in extension_sections(amp).items():
        key = kw.keyword(item, amp.name, shared) or item.upper()[:8]
        if item == "prescan" and kw.prescan is None:
            key = f"PRESCAN{amp.name if shared else ''}"
        h[key] = (text, comments[item])
    h[kw.keyword("gain", amp.name, shared)] = (amp.gain, "[e-/ADU] nominal gain")
    h[kw.keyword("read_noise", amp.name, shared)] = (amp.read_noise, "[e-] read noise")
    h[kw.keyword("saturation", amp.name, shared)] = (amp.saturation, "[ADU] saturation")


def _name_keywords(inst: Instrument, h: fits.Header, ccd: CCD, amp: Amplifier | None) -> None:
    ident = inst.ccd_identifier
    if ident.keyword is not None:
        h[ident.keyword] = (identifier_value(ident, ccd.num, ccd.name, "CCDNUM"), "CCD")
    h["CCDNAME"] = ccd.name
    if amp is not None:
        aid = inst.amp_identifier
        if aid.keyword is not None:
            h[aid.keyword] = (identifier_value(aid, amp.num, amp.name, "AMPNUM"), "amplifier")
        h["AMPNAME"] = amp.name


def amp_extension_header(inst: Instrument, ccd: CCD, amp: Amplifier) -> fits.Header:
    """Header of an amplifier's own extension."""
    h = fits.Header()
    _name_keywords(inst, h, ccd, amp)
    _amp_keywords(inst, h, amp, shared=False)
    h["FLIPX"] = (amp.flip_x, "DATASEC columns reversed w.r.t. CCDSEC")
    h["FLIPY"] = (amp.flip_y, "DATASEC rows reversed w.r.t. CCDSEC")
    h["DETSIZE"] = f"[1:{ccd.shape[1]},1:{ccd.shape[0]}]"
    h["BUNIT"] = "adu"
    return h


def ccd_header(inst: Instrument, ccd: CCD) -> fits.Header:
    """Header of an extension (or primary HDU) holding every amplifier of a CCD."""
    h = fits.Header()
    _name_keywords(inst, h, ccd, None)
    for amp in ccd.amplifiers:
        _amp_keywords(inst, h, amp, shared=True)
    h["DETSIZE"] = f"[1:{ccd.shape[1]},1:{ccd.shape[0]}]"
    h["BUNIT"] = "adu"
    return h


def ccd_pixels(ccd: CCD, raws: dict[int, np.ndarray]) -> np.ndarray:
    """The (ny, nx) uint16 extension holding every amplifier frame of ``raws`` at its region."""
    his = [Section.parse(a.region).hi for a in ccd.amplifiers]
    out = np.zeros((max(y for _, y in his), max(x for x, _ in his)), np.uint16)
    for amp in ccd.amplifiers:
        place_amp(out, amp.region, raws[amp.num])
    return out


def ccd_hdus(inst: Instrument, ccd: CCD, raws: dict[int, np.ndarray]) -> list[fits.ImageHDU]:
    """The image extensions of one CCD (none for the primary layout: see
    :func:`primary_pixels`)."""
    layout = inst.layout.extensions
    if layout == "primary":
        return []
    if layout == "ccd":
        hdr = ccd_header(inst, ccd)
        return [fits.ImageHDU(ccd_pixels(ccd, raws), header=hdr, name=_extname(inst, hdr, ccd))]
    hdus = []
    for amp in ccd.amplifiers:
        hdr = amp_extension_header(inst, ccd, amp)
        name = _extname(inst, hdr, ccd, amp)
        hdus.append(fits.ImageHDU(data=raws[amp.num], header=hdr, name=name))
    return hdus


def _extname(inst: Instrument, hdr: fits.Header, ccd: CCD, amp: Amplifier | None = None) -> str:
    if "EXTNAME" in hdr:
        return str(hdr["EXTNAME"])
    return ccd.name if amp is None else f"{ccd.name}_{amp.name}"
