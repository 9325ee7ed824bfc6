"""The instrument description kept in the registry (``instrument_version``).

An obs set names its camera by built-in name or YAML path (``obs_set.instrument``, from the
manifest). At its first registration :func:`pin_instrument` reads that description, records
its text and sha256 as an :class:`~surveydm.db.models.raw.InstrumentVersion` (a text not seen
before gets the next version number of that instrument) and fixes it for the obs set; every
later task reads the camera with :func:`obs_set_instrument`, from the registry, whatever
machine it runs on and whatever happened to the file since. An edited file therefore makes a
new version for the next obs set, never a silent mix within one.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveydm.db import Registry
from surveydm.db.models.raw import InstrumentVersion, ObsSet
from surveydm.errors import SurveydmError
from surveydm.instruments import Instrument, instrument_from_text, instrument_text, load_instrument


class InstrumentVersionConflict(SurveydmError):
    """An obs set's instrument description differs from the one it was first registered with."""


def record_version(s: Session, name_or_path: str) -> InstrumentVersion:
    """The ``instrument_version`` row of the description as it is now (created when its text
    is new: the next version of that instrument).

    Raises:
        surveydm.instruments.InstrumentError: the description cannot be read or is invalid.
    """
    found = instrument_text(name_or_path)
    row = s.scalars(
        select(InstrumentVersion).where(InstrumentVersion.sha256 == found.sha256)
    ).one_or_none()
    if row is not None:
        return row
    last = s.scalar(
        select(func.max(InstrumentVersion.version)).where(InstrumentVersion.name == found.name)
    )
    row = InstrumentVersion(
        name=found.name,
        version=(last or 0) + 1,
        sha256=found.sha256,
        text=found.text,
        source=found.source,
    )
    s.add(row)
    s.flush()
    return row


def pin_instrument(registry: Registry, obs_set: str, override: str | None = None) -> Instrument:
    """Fix the obs set's instrument description in the registry (at its first registration)
    and return it; later calls return the pinned one.

    Args:
        override: a built-in name or YAML path to use instead of the obs set's.

    Raises:
        InstrumentVersionConflict: ``override`` differs from the description already pinned.
        surveydm.instruments.InstrumentError: the description cannot be read or is invalid.
    """
    with registry.session() as s:
        obs = s.scalars(select(ObsSet).where(ObsSet.obs_set == obs_set)).one()
        if obs.instrument_version is not None:
            pinned = obs.instrument_version
            if override is not None:
                wanted = instrument_text(override)
                if wanted.sha256 != pinned.sha256:
                    raise InstrumentVersionConflict(
                        f"obs set {obs_set} was registered with {pinned.name} version "
                        f"{pinned.version} (sha256 {pinned.sha256[:12]}); {override} differs "
                        f"(sha256 {wanted.sha256[:12]})"
                    )
            return _parsed(pinned)
        row = record_version(s, override or obs.instrument)
        obs.instrument_version_id = row.id
        return _parsed(row)


def obs_set_instrument(s: Session, obs: ObsSet) -> Instrument:
    """The instrument description of an obs set, from the registry (the version pinned at
    its first registration; for an obs set registered before versions were kept, the
    description it names, as it is now).

    Raises:
        surveydm.instruments.InstrumentError: the stored text is invalid, or the named file
            cannot be read.
    """
    if obs.instrument_version is not None:
        return _parsed(obs.instrument_version)
    return load_instrument(obs.instrument)


def _parsed(row: InstrumentVersion) -> Instrument:
    return instrument_from_text(row.text, f"{row.name} version {row.version} (registry)")
