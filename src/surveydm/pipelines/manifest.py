"""The observation-set manifest written by the data acquisition (DAQ) beside the raw files:
obs set, night, instrument, operator, project, comments, MJD range, and the list of files with
kind, size and adler32 (PAUdm, seed 000 section 3). See :mod:`surveydm.pipelines.transfer` for
how it is used.

.. code-block:: yaml

    obs_set: 20261120_001
    night: 2026-11-20
    instrument: paucam-mini
    files:
      - {name: paucam-mini.20261120.0001.fits, kind: bias, size: 4204800, adler32: 1a2b3c4d}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from surveydm.archive import normalise_adler32
from surveydm.db.models.raw import RAW_KINDS
from surveydm.errors import SurveydmError

MANIFEST_NAME = "manifest.yaml"


class ManifestError(SurveydmError):
    """A manifest is not valid YAML or lacks / mistypes a field (the message names it)."""


@dataclass(frozen=True)
class ManifestFile:
    """One file listed in a manifest: name, kind, size (bytes), adler32 (8 hex)."""

    name: str
    kind: str
    size: int
    adler32: str


@dataclass(frozen=True)
class Manifest:
    """A parsed observation-set manifest (see the module docstring for the format)."""

    obs_set: str
    night: date
    instrument: str
    files: tuple[ManifestFile, ...]
    operator: str | None = None
    project: str | None = None
    comments: str | None = None
    mjd_start: float | None = None
    mjd_stop: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str, source: str = MANIFEST_NAME) -> Manifest:
        """Validate a manifest's YAML text.

        Raises:
            ManifestError: not YAML, not a mapping, a missing or mistyped field, a bad file
                name, kind, size or adler32, or a file listed twice (the message says which).
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ManifestError(f"{source}: not valid YAML ({exc})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: expected a mapping at the top level")

        def need(key: str) -> Any:
            if data.get(key) in (None, ""):
                raise ManifestError(f"{source}: missing field {key!r}")
            return data[key]

        obs_set = str(need("obs_set"))
        if "/" in obs_set or obs_set.startswith("."):
            raise ManifestError(f"{source}: bad obs_set {obs_set!r}")
        night_raw = need("night")
        try:
            night = night_raw if isinstance(night_raw, date) else date.fromisoformat(str(night_raw))
        except ValueError:
            raise ManifestError(f"{source}: night {night_raw!r} is not YYYY-MM-DD") from None
        files_raw = need("files")
        if not isinstance(files_raw, list):
            raise ManifestError(f"{source}: 'files' must be a list")
        files: list[ManifestFile] = []
        seen: set[str] = set()
        for i, entry in enumerate(files_raw):
            where = f"{source}: files[{i}]"
            if not isinstance(entry, dict):
                raise ManifestError(f"{where}: expected a mapping with name, kind, size, adler32")
            for key in ("name", "kind", "size", "adler32"):
                if entry.get(key) in (None, ""):
                    raise ManifestError(f"{where}: missing field {key!r}")
            name = str(entry["name"])
            if "/" in name or name in (".", "..", MANIFEST_NAME) or name.startswith("."):
                raise ManifestError(f"{where}: bad file name {name!r}")
            if name in seen:
                raise ManifestError(f"{where}: {name} listed twice")
            seen.add(name)
            kind = str(entry["kind"]).lower()
            if kind not in RAW_KINDS:
                raise ManifestError(f"{where}: kind {kind!r} not one of {', '.join(RAW_KINDS)}")
            size = entry["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ManifestError(f"{where}: size {size!r} is not a byte count")
            try:
                adler = normalise_adler32(entry["adler32"])
            except ValueError as exc:
                raise ManifestError(f"{where}: {exc}") from None
            files.append(ManifestFile(name, kind, size, adler))

        def number(key: str) -> float | None:
            v = data.get(key)
            if v is None:
                return None
            try:
                return float(v)
            except (TypeError, ValueError):
                raise ManifestError(f"{source}: {key} {v!r} is not a number") from None

        def text_field(key: str) -> str | None:
            v = data.get(key)
            return None if v is None else str(v)

        return cls(
            obs_set=obs_set,
            night=night,
            instrument=str(need("instrument")),
            files=tuple(files),
            operator=text_field("operator"),
            project=text_field("project"),
            comments=text_field("comments"),
            mjd_start=number("mjd_start"),
            mjd_stop=number("mjd_stop"),
            raw=_jsonable(data),
        )

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read and validate a manifest file. Raises ManifestError (also when unreadable)."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read ({exc})") from None
        return cls.parse(text, str(path))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value
