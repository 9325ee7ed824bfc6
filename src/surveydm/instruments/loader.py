"""Load and validate instrument YAML files; read header values through the keyword mapping."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from surveydm.errors import SurveydmError
from surveydm.instruments.model import Instrument, KeywordSpec

DATA_DIR = Path(__file__).parent / "data"


class InstrumentError(SurveydmError):
    """An instrument file is missing, not YAML, or invalid (the message names the field)."""


def builtin_instruments() -> list[str]:
    """Names of the instruments shipped with surveydm."""
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class InstrumentText:
    """An instrument description as stored in the registry: its YAML text, the sha256 of the
    text (hex) and where it was read from (built-in name or file path)."""

    name: str
    text: str
    sha256: str
    source: str


def _path_of(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = DATA_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise InstrumentError(
                f"unknown instrument {name_or_path!r}; built-in: {', '.join(builtin_instruments())}"
                " (or give the path of a YAML file)"
            )
    return path.resolve()


def load_instrument(name_or_path: str | Path) -> Instrument:
    """Load a built-in instrument by name or an instrument YAML file by path.

    Raises:
        InstrumentError: unknown name, unreadable file, invalid YAML, or a field that fails
            validation (the message gives the field's path, e.g. ``ccds.3.amplifiers.0.gain``).
    """
    path = _path_of(name_or_path)
    return instrument_from_text(_read(path), str(path))


def instrument_text(name_or_path: str | Path) -> InstrumentText:
    """The text and sha256 of an instrument description (built-in name or YAML path),
    validated: what the registry keeps of it (:mod:`surveydm.pipelines.instrument_versions`).

    Raises:
        InstrumentError: as :func:`load_instrument`.
    """
    path = _path_of(name_or_path)
    text = _read(path)
    inst = instrument_from_text(text, str(path))
    source = str(name_or_path) if path.parent == DATA_DIR.resolve() else str(path)
    return InstrumentText(inst.name, text, hashlib.sha256(text.encode()).hexdigest(), source)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise InstrumentError(f"cannot read instrument file {path}: {exc}") from exc


@lru_cache(maxsize=32)
def instrument_from_text(text: str, source: str = "<text>") -> Instrument:
    """Validate an instrument description given as YAML text (``source`` names it in errors).

    Raises:
        InstrumentError: invalid YAML or a field that fails validation.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InstrumentError(f"instrument file {source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InstrumentError(f"instrument file {source}: expected a mapping at the top level")
    try:
        return Instrument.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise InstrumentError(f"instrument file {source}: {problems}") from None


def read_keyword(header: Any, spec: KeywordSpec | None, name: str = "") -> Any:
    """Value of ``spec`` in a FITS header, converted to degrees for angles.

    Raises:
        KeyError: the keyword is required and absent (message names the keyword).
        ValueError: an angle cannot be parsed.
    """
    if spec is None:
        return None
    if spec.keyword not in header:
        if spec.required:
            raise KeyError(f"header has no {spec.keyword} ({name or 'required keyword'})")
        return spec.default
    value = header[spec.keyword]
    if spec.unit in ("deg", "hourangle") and isinstance(value, str):
        from astropy.coordinates import Angle

        return float(Angle(value, unit=spec.unit).deg)
    if spec.unit == "hourangle":
        return float(value) * 15.0
    return value
