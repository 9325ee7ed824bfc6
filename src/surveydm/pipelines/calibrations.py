"""Selection of master calibrations by validity range (Astro-WISE calibration timestamps,
seed 003): a science exposure uses the best frame of the right kind whose range covers it (the
same night by default), else the nearest valid frame in time within a limit. A frame's quality
and validity are those of its product (``product.quality`` in the QC vocabulary,
``product.valid`` the human flag)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db.models.calibration import CalibrationFrame
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile
from surveydm.orchestration.qc import QCResult

#: A night's calibrations are valid from local noon to local noon (UTC noon is close enough
#: for the observatories surveydm targets and keeps the rule instrument-independent).
NIGHT_START_HOUR_UTC = 12


def night_window(night: str) -> tuple[datetime, datetime]:
    """(valid_from, valid_until) of a night ``YYYY-MM-DD``: noon UTC to the next noon UTC."""
    start = datetime.combine(date.fromisoformat(night), datetime.min.time(), tzinfo=UTC)
    start += timedelta(hours=NIGHT_START_HOUR_UTC)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class CalibrationRef:
    """A master calibration chosen for a task: what its I/O step reads and its lineage names.

    Attributes:
        frame_id: ``calibration_frame.id``.
        product_id: its product (the lineage input).
        path: its file, relative to the archive root (one image extension per CCD).
        night: ``YYYY-MM-DD`` it was made for (QC references name it).
    """

    frame_id: int
    product_id: int
    path: str
    night: str


def find_calibration(
    session: Session,
    kind: str,
    instrument: str,
    when: datetime,
    *,
    filter_tray: str | None = None,
    max_days: float = 30.0,
) -> CalibrationRef | None:
    """The master calibration to use for an exposure taken at ``when``, as the
    :class:`CalibrationRef` a task reads and records in its lineage.

    Candidates are frames of ``kind`` (and ``filter_tray`` for flats) for ``instrument`` whose
    product neither failed QC nor was invalidated by a human. A frame whose validity range
    covers ``when`` wins (``pass`` before ``warn``, then the newest); otherwise the frame whose
    range ends or starts nearest in time, if within ``max_days``. Returns None if there is none.
    """
    frame = _best_frame(session, kind, instrument, when, filter_tray, max_days)
    if frame is None:
        return None
    path = session.get(ArchiveFile, frame.product.file_id).path
    return CalibrationRef(frame.id, frame.product_id, path, frame.night)


def _best_frame(
    session: Session,
    kind: str,
    instrument: str,
    when: datetime,
    filter_tray: str | None,
    max_days: float,
) -> CalibrationFrame | None:
    base = (
        select(CalibrationFrame)
        .join(Product, Product.id == CalibrationFrame.product_id)
        .where(
            CalibrationFrame.kind == kind,
            CalibrationFrame.instrument == instrument,
            Product.quality != QCResult.FAIL,
            Product.valid.is_(True),
        )
    )
    if filter_tray is not None:
        base = base.where(CalibrationFrame.filter_tray == filter_tray)
    covering = session.scalars(
        base.where(CalibrationFrame.valid_from <= when, CalibrationFrame.valid_until >= when)
    ).all()
    if covering:
        return min(
            covering,
            key=lambda c: (c.product.quality != QCResult.PASS, -c.created.timestamp()),
        )
    before = session.scalars(
        base.where(CalibrationFrame.valid_until < when)
        .order_by(CalibrationFrame.valid_until.desc())
        .limit(1)
    ).first()
    after = session.scalars(
        base.where(CalibrationFrame.valid_from > when)
        .order_by(CalibrationFrame.valid_from.asc())
        .limit(1)
    ).first()
    candidates = []
    if before is not None:
        candidates.append((when - before.valid_until, before))
    if after is not None:
        candidates.append((after.valid_from - when, after))
    candidates = [(d, c) for d, c in candidates if d <= timedelta(days=max_days)]
    return min(candidates, key=lambda dc: dc[0])[1] if candidates else None
