"""What a pipeline task reads and writes, declared by product type and data ID.

The model is Rubin ``pipe_base`` connections: a task class lists its raw inputs
(:class:`RawInput`), the master calibrations it needs (:class:`CalibrationInput`, Rubin's
prerequisite inputs) and its products (:class:`Output`), each by product type and the data-ID
dimensions that select it (``obs_set``, ``filter_tray``, ``mosaic_id``, ``ccd``, ``filter``...).
The functions here resolve those declarations against the registry for one quantum (one job's
data ID): :func:`raw_frames` and :func:`lookup_calibrations`. Writing and recording outputs is
:mod:`surveydm.pipelines.base.recording`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.archive import Archive
from surveydm.config import load_settings
from surveydm.db.models.raw import Mosaic, ObsSet
from surveydm.orchestration import QualityFailure
from surveydm.pipelines.calibrations import CalibrationRef, find_calibration


@dataclass(frozen=True)
class RawInput:
    """Raw exposures a task reads: the mosaics of ``kind`` in the quantum's observation set,
    also matching the quantum's value of every other dimension in ``dimensions``.

    Attributes:
        kind: raw mosaic kind (``bias``, ``flat``, ``science``...).
        dimensions: data-ID keys that select them (``obs_set`` first).
        role: lineage role of the raw products (``raw``).
    """

    kind: str
    dimensions: tuple[str, ...] = ("obs_set",)
    role: str = "raw"


@dataclass(frozen=True)
class CalibrationInput:
    """A master calibration a task needs, chosen by validity range at the exposure time.

    Attributes:
        product_type: ``master_bias``, ``master_flat``, ``master_fringe``.
        role: lineage role of the chosen frame (``bias``, ``flat``, ``fringe``).
        dimensions: data-ID keys it must match besides the instrument (``filter_tray`` for
            flats and fringe frames).
        missing: the quality failure raised by :func:`require_calibrations` when none is valid
            (empty: the task goes on without it).
    """

    product_type: str
    role: str
    dimensions: tuple[str, ...] = ("instrument",)
    missing: str = ""


@dataclass(frozen=True)
class Output:
    """A product a task writes, with the data-ID dimensions that identify it."""

    product_type: str
    dimensions: tuple[str, ...]

    def data_id(self, data_id: Mapping[str, Any]) -> dict[str, Any]:
        """This output's data ID: the quantum's values of :attr:`dimensions`."""
        return {d: data_id.get(d) for d in self.dimensions}


@dataclass(frozen=True)
class RawFrame:
    """One raw exposure as an I/O step reads it.

    Attributes:
        mosaic_id: ``mosaic.id``; file_id: ``archive_file.id``; filename: as in the manifest;
        path: absolute path in the archive; when: start of the exposure (UTC, aware).
    """

    mosaic_id: int
    file_id: int
    filename: str
    path: Path
    when: datetime


def archive() -> Archive:
    """The configured archive (``SURVEYDM_HOME`` or the settings file)."""
    return Archive(load_settings().archive_root)


def obs_set(session: Session, name: str) -> ObsSet:
    """The registered observation set ``name``.

    Raises:
        QualityFailure: it is not registered.
    """
    row = session.scalar(select(ObsSet).where(ObsSet.obs_set == name))
    if row is None:
        raise QualityFailure(f"observation set {name!r} is not registered")
    return row


def mosaics(session: Session, obs_set_id: int, kind: str) -> list[Mosaic]:
    """Mosaics of ``kind`` in an observation set, in time order."""
    return list(
        session.scalars(
            select(Mosaic)
            .where(Mosaic.obs_set_id == obs_set_id, Mosaic.kind == kind)
            .order_by(Mosaic.date_obs, Mosaic.id)
        )
    )


def raw_frame(store: Archive, m: Mosaic) -> RawFrame:
    """The :class:`RawFrame` of a registered raw mosaic."""
    return RawFrame(
        m.id, m.archive_file_id, m.filename, store.abspath(m.archive_file.path), m.date_obs
    )


def raw_frames(
    session: Session, store: Archive, spec: RawInput, data_id: Mapping[str, Any]
) -> list[RawFrame]:
    """The raw exposures of ``spec`` for the quantum ``data_id`` (time order).

    Raises:
        QualityFailure: the observation set is not registered.
    """
    obs = obs_set(session, data_id["obs_set"])
    extra = [d for d in spec.dimensions if d != "obs_set"]
    return [
        raw_frame(store, m)
        for m in mosaics(session, obs.id, spec.kind)
        if all(getattr(m, d) == data_id[d] for d in extra)
    ]


def lookup_calibrations(
    session: Session,
    specs: Sequence[CalibrationInput],
    data_id: Mapping[str, Any],
    when: datetime | None,
) -> dict[str, CalibrationRef | None]:
    """The best valid frame of each declared calibration for an exposure at ``when``, by role
    (None where there is none, or no exposure time to choose by)."""
    refs: dict[str, CalibrationRef | None] = {}
    for spec in specs:
        tray = data_id.get("filter_tray") if "filter_tray" in spec.dimensions else None
        refs[spec.role] = (
            None
            if when is None
            else find_calibration(
                session, spec.product_type, data_id["instrument"], when, filter_tray=tray
            )
        )
    return refs


def require_calibrations(
    specs: Sequence[CalibrationInput],
    refs: Mapping[str, CalibrationRef | None],
    data_id: Mapping[str, Any],
) -> None:
    """Raise the declared quality failure of the first required calibration missing.

    Raises:
        QualityFailure: ``spec.missing`` formatted with the data ID.
    """
    for spec in specs:
        if spec.missing and refs.get(spec.role) is None:
            raise QualityFailure(spec.missing.format(**data_id))
