"""Where each amplifier of a raw file is, for every layout an instrument file can describe
(:class:`surveydm.instruments.RawLayout`): one image extension per amplifier, one per CCD
with per-amplifier section keywords (``DATASECA``, ``BIASSECB``...), or one CCD in the
primary HDU. CCDs and amplifiers are identified by a header value, integer or string, mapped
through the instrument file, or by extension order; sections, gain, read noise and saturation
the instrument file leaves out are read from the headers. Registration
(:mod:`surveydm.pipelines.raw_exposure`) and every task reading raw pixels
(:func:`surveydm.pipelines.fitsio.read_raw_ccd`) go through :func:`locate_amps`, so both see
the same amplifiers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from surveydm.instruments import CCD, Amplifier, Identifier, Instrument
from surveydm.instruments.sections import SECTION_KEYS, amp_frame


class LayoutError(ValueError):
    """An extension does not fit the instrument's layout: unknown CCD or amplifier name,
    missing keyword, section that does not parse. The message names the extension."""


@dataclass(frozen=True)
class RawAmp:
    """One amplifier found in a raw file: its CCD number, its description completed from the
    headers (amplifier frame, see :mod:`surveydm.instruments.sections`), the index of the
    HDU holding it (0 = primary) and how that HDU is named in messages."""

    ccd_num: int
    amp: Amplifier
    hdu: int
    where: str


def _where(hdu_index: int, header: Any) -> str:
    name = header.get("EXTNAME")
    label = "primary HDU" if hdu_index == 0 else f"extension {hdu_index}"
    return f"{label} (EXTNAME {str(name).strip()!r})" if name else label


def identify(ident: Identifier, header: Any, choices: list[tuple[int, str]], what: str,
             where: str) -> int:  # fmt: skip
    """The number of the CCD (amplifier) a header names through ``ident``.

    Args:
        choices: (number, name) of the candidates (the instrument's CCDs, or a CCD's amps).

    Raises:
        LayoutError: the keyword is absent or its value maps to no candidate (the message
            gives the extension, the keyword, the value and the mapping).
    """
    if ident.keyword not in header:
        raise LayoutError(f"{where}: no {ident.keyword} keyword (the {what} it holds)")
    value = header[ident.keyword]
    key = str(value).strip()
    nums = {num for num, _ in choices}
    if ident.values:
        mapping = dict(ident.values)
        if key in mapping and mapping[key] in nums:
            return mapping[key]
    else:
        mapping = {name: num for num, name in choices}
        if key in mapping:
            return mapping[key]
        if key.lstrip("+-").isdigit() and int(key) in nums:
            return int(key)
    raise LayoutError(
        f"{where}: {ident.keyword} = {value!r} names no {what}; "
        f"mapping in the instrument file: {mapping}"
    )


def complete_amp(
    inst: Instrument, amp: Amplifier, header: Any, ext_shape: tuple[int, int], where: str
) -> Amplifier:
    """``amp`` with the values its description leaves out read from ``header`` and its
    geometry in the amplifier frame; ``amp`` itself when nothing is left out.

    Raises:
        LayoutError: a needed keyword is absent, or the values do not make a valid amplifier.
    """
    shared = inst.layout.shared
    if amp.complete:
        return amp
    kw = inst.layout.keywords
    d = amp.model_dump()
    for item in (*SECTION_KEYS, "gain", "read_noise", "saturation"):
        if d.get(item) is not None:
            continue
        key = kw.keyword(item, amp.name, shared)
        if key is None:
            continue
        if key not in header:
            if item == "prescan":
                continue
            raise LayoutError(f"{where}: no {key} keyword (amplifier {amp.name} {item})")
        d[item] = header[key] if item in SECTION_KEYS else float(header[key])
    if d.get("region") is None and not shared:
        d["raw_shape"] = list(ext_shape)
    try:
        return Amplifier.model_validate(amp_frame(d, shared))
    except (ValidationError, ValueError) as exc:
        raise LayoutError(f"{where}: amplifier {amp.name}: {exc}") from None


def _image_hdus(hdul: Any, inst: Instrument) -> Iterator[int]:
    if inst.layout.extensions == "primary":
        yield 0
        return
    yield from range(1, len(hdul))


def locate_amps(hdul: Any, inst: Instrument, ccd_num: int | None = None) -> list[RawAmp]:
    """Every amplifier of an open raw file (of CCD ``ccd_num`` only, when given), in file
    order. Headers are read; pixels are not.

    Raises:
        LayoutError: an extension names an unknown CCD or amplifier, a needed keyword is
            absent, or the file has more extensions than the layout allows.
    """
    order = [(c, a) for c in inst.ccds for a in c.amplifiers]
    ccd_choices = [(c.num, c.name) for c in inst.ccds]
    found: list[RawAmp] = []
    for i, hdu_index in enumerate(_image_hdus(hdul, inst)):
        hdr = hdul[hdu_index].header
        where = _where(hdu_index, hdr)
        ccd, amps = _ccd_and_amps(inst, hdr, i, order, ccd_choices, where)
        if ccd_num is not None and ccd.num != ccd_num:
            continue
        shape = _shape(hdr)
        for amp in amps:
            found.append(RawAmp(ccd.num, complete_amp(inst, amp, hdr, shape, where),
                                hdu_index, where))  # fmt: skip
    return found


def resolved_ccd(inst: Instrument, ccd_num: int, amps: list[RawAmp]) -> CCD:
    """The CCD's description with its amplifiers as found in one raw file (values from the
    headers filled in): what the reduction assembles the CCD with.

    Raises:
        LayoutError: the amplifiers found do not tile the CCD.
    """
    ccd = inst.ccd(ccd_num)
    if ccd.complete:
        return ccd
    by_num = {r.amp.num: r.amp for r in amps if r.ccd_num == ccd_num}
    data = ccd.model_dump()
    data["amplifiers"] = [by_num.get(a.num, a).model_dump() for a in ccd.amplifiers]
    try:
        return CCD.model_validate(data)
    except ValidationError as exc:
        raise LayoutError(f"CCD {ccd.name}: {exc}") from None


def _shape(header: Any) -> tuple[int, int]:
    return int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0))


def _ccd_and_amps(
    inst: Instrument,
    hdr: Any,
    i: int,
    order: list[tuple[CCD, Amplifier]],
    ccd_choices: list[tuple[int, str]],
    where: str,
) -> tuple[CCD, list[Amplifier]]:
    """The CCD an image HDU holds and the amplifiers in it."""
    layout = inst.layout
    if layout.extensions == "primary":
        return inst.ccds[0], list(inst.ccds[0].amplifiers)
    if layout.extensions == "ccd":
        ident = inst.ccd_identifier
        if ident.keyword is None:
            if i >= len(inst.ccds):
                raise LayoutError(f"{where}: more extensions than CCDs ({len(inst.ccds)})")
            ccd = inst.ccds[i]
        else:
            ccd = inst.ccd(identify(ident, hdr, ccd_choices, "CCD", where))
        return ccd, list(ccd.amplifiers)
    ccd_ident, amp_ident = inst.ccd_identifier, inst.amp_identifier
    if ccd_ident.keyword is None:
        if i >= len(order):
            raise LayoutError(f"{where}: more extensions than amplifiers ({len(order)})")
        ccd = order[i][0]
    else:
        ccd = inst.ccd(identify(ccd_ident, hdr, ccd_choices, "CCD", where))
    if amp_ident.keyword is None:
        if ccd_ident.keyword is not None:
            raise LayoutError("layout: amplifiers by extension order need CCDs by order too")
        return ccd, [order[i][1]]
    choices = [(a.num, a.name) for a in ccd.amplifiers]
    num = identify(amp_ident, hdr, choices, f"amplifier of CCD {ccd.name}", where)
    return ccd, [ccd.amp(num)]
