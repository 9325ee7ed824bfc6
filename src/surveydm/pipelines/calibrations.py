"""Selection of master calibrations by validity range (Astro-WISE calibration timestamps,
seed 003): a science exposure uses the best frame of the right kind whose range covers it (the
same night by default), else the nearest valid frame in time within a limit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db.models.calibration import CalibrationFrame

#: A night's calibrations are valid from local noon to local noon (UTC noon is close enough
#: for the observatories surveydm targets and keeps the rule instrument-independent).
NIGHT_START_HOUR_UTC = 12


def night_window(night: str) -> tuple[datetime, datetime]:
    """(valid_from, valid_until) of a night ``YYYY-MM-DD``: noon UTC to the next noon UTC."""
    start = datetime.combine(date.fromisoformat(night), datetime.min.time(), tzinfo=UTC)
    start += timedelta(hours=NIGHT_START_HOUR_UTC)
    return start, start + timedelta(days=1)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def best_calibration(
    session: Session,
    kind: str,
    instrument: str,
    when: datetime,
    *,
    filter_tray: str | None = None,
    max_days: float = 30.0,
) -> CalibrationFrame | None:
    """The master calibration to use for an exposure taken at ``when``.

    Candidates are frames of ``kind`` (and ``filter_tray`` for flats) for ``instrument`` that
    are neither flagged bad by QC nor invalidated by a human. A frame whose validity range
    covers ``when`` wins (``ok`` before ``warn``, then the newest); otherwise the frame whose
    range ends or starts nearest in time, if within ``max_days``. Returns None if there is none.
    """
    when = _aware(when)
    base = select(CalibrationFrame).where(
        CalibrationFrame.kind == kind,
        CalibrationFrame.instrument == instrument,
        CalibrationFrame.quality != "bad",
        CalibrationFrame.valid.is_(True),
    )
    if filter_tray is not None:
        base = base.where(CalibrationFrame.filter_tray == filter_tray)
    covering = session.scalars(
        base.where(CalibrationFrame.valid_from <= when, CalibrationFrame.valid_until >= when)
    ).all()
    if covering:
        return sorted(covering, key=lambda c: (c.quality != "ok", -_aware(c.created).timestamp()))[
            0
        ]
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
        candidates.append((when - _aware(before.valid_until), before))
    if after is not None:
        candidates.append((_aware(after.valid_from) - when, after))
    candidates = [(d, c) for d, c in candidates if d <= timedelta(days=max_days)]
    return min(candidates, key=lambda dc: dc[0])[1] if candidates else None
