"""Instrument (camera) descriptions: built-ins in ``data/*.yaml``, or any YAML file by path.

>>> from surveydm.instruments import load_instrument
>>> cam = load_instrument("paucam-mini")
>>> cam.ccd(1).amp(1).gain
"""

from surveydm.instruments.loader import (
    InstrumentError,
    builtin_instruments,
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
    Instrument,
    KeywordSpec,
    parse_section,
    section_shape,
)

__all__ = [
    "CCD",
    "Amplifier",
    "Crosstalk",
    "Filter",
    "FilterTray",
    "HeaderMapping",
    "Instrument",
    "InstrumentError",
    "KeywordSpec",
    "builtin_instruments",
    "load_instrument",
    "parse_section",
    "read_keyword",
    "section_shape",
]
