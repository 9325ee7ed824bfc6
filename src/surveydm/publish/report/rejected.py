"""Raw files of an obs set that were not reduced because they never got registered, with the
reason (seed 000 section 6.1: the nightly report lists what to re-observe).

A file listed in an obs set's manifest has no ``mosaic`` row when the transfer rejected it
(checksum or size mismatch, truncated, missing from the buffer: quarantined) or when its
registration failed (unreadable FITS, headers not fitting the instrument). The reason is the
last line the transfer or registration wrote for it in ``obs_set.log``, else the quality
message of its failed ``register_file`` job, else what the registry shows (not archived).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db.models.jobs import Job
from surveydm.db.models.raw import ArchiveFile, Mosaic, ObsSet

_LOG_LINE = re.compile(
    r"^\S+ (?:transfer|register): (?P<name>\S+) (?:rejected|failed): (?P<why>.*)$"
)


@dataclass(frozen=True)
class RejectedFile:
    """A raw file listed in a manifest and not registered: obs set, night (YYYY-MM-DD), file
    name, kind the manifest gives it (``science``, ``flat``...; None when it gives none) and
    why it was not registered."""

    obs_set: str
    night: str
    filename: str
    kind: str | None
    reason: str


def rejected_files(session: Session, first: date, last: date) -> list[RejectedFile]:
    """The unregistered files of the obs sets of nights ``first``..``last`` (inclusive), in
    obs set and manifest order."""
    sets = session.scalars(
        select(ObsSet).where(ObsSet.night >= first, ObsSet.night <= last).order_by(ObsSet.obs_set)
    ).all()
    out: list[RejectedFile] = []
    for obs in sets:
        files = [f for f in (obs.manifest or {}).get("files", []) if isinstance(f, dict)]
        registered = set(
            session.scalars(
                select(Mosaic.filename).where(
                    Mosaic.obs_set_id == obs.id, Mosaic.parent_id.is_(None)
                )
            )
        )
        missing = [f for f in files if str(f.get("name")) not in registered]
        if not missing:
            continue
        reasons = _log_reasons(obs.log or "")
        night = obs.night.isoformat()
        for f in missing:
            name = str(f.get("name"))
            why = (
                reasons.get(name)
                or _job_reason(session, name)
                or _archive_reason(session, obs, name)
            )
            out.append(RejectedFile(obs.obs_set, night, name, f.get("kind"), why))
    return out


def _log_reasons(log: str) -> dict[str, str]:
    """file name -> the last reason the obs set's log gives for rejecting it."""
    out: dict[str, str] = {}
    for line in log.splitlines():
        m = _LOG_LINE.match(line.strip())
        if m:
            out[m["name"]] = m["why"]
    return out


def _job_reason(session: Session, name: str) -> str | None:
    row = session.execute(
        select(Job.quality, Job.fault)
        .where(Job.task == "register_file", Job.name == f"register {name}")
        .where(Job.status.in_(("failed", "failed_quality")))
        .order_by(Job.id.desc())
        .limit(1)
    ).first()
    return (row[0] or row[1]) if row else None


def _archive_reason(session: Session, obs: ObsSet, name: str) -> str:
    found = session.scalar(
        select(ArchiveFile.id).where(ArchiveFile.path.like(f"%/{obs.obs_set}/{name}"))
    )
    return "not registered yet" if found else "listed in the manifest but not archived"
