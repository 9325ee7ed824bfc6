"""Instrument (camera) descriptions: built-ins in ``data/*.yaml``, or any YAML file by path.

>>> from surveydm.instruments import load_instrument
>>> cam = load_instrument("paucam-mini")
>>> cam.ccd(1).amp(1).gain
"""

from surveydm.instruments.loader import (
    InstrumentError,
    InstrumentText,
    builtin_instruments,
    instrument_from_text,
    instrument_text,
    load_instrument,
    read_keyword,
)
from surveydm.instruments.model import (
    CCD,
    Amplifier,
    Crosstalk,
    Filter,
    FilterTray,
    HeaderMapping,
    Identifier,
    Instrument,
    KeywordSpec,
    LayoutKeywords,
    RawLayout,
)
from surveydm.instruments.sections import parse_section, section_shape

__all__ = [
    "CCD",
    "Amplifier",
    "Crosstalk",
    "Filter",
    "FilterTray",
    "HeaderMapping",
    "Identifier",
    "Instrument",
    "InstrumentError",
    "InstrumentText",
    "KeywordSpec",
    "LayoutKeywords",
    "RawLayout",
    "builtin_instruments",
    "instrument_from_text",
    "instrument_text",
    "load_instrument",
    "parse_section",
    "read_keyword",
    "section_shape",
]
