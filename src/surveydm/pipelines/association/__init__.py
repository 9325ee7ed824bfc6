"""Detection-to-object association as job-system tasks (seed 004 DVO sections 2.4-2.5).

Per run (``surveydm associate``)::

    associate (prolog: one associate_partition per HEALPix sky partition touched by detections
               not yet associated in the production, and the partitions around them)
      associate_partition (the partition's detections plus a margin of the 8 neighbouring
                           partitions, associated by reduction.association.associate; the
                           objects whose mean position falls inside the partition are
                           rewritten: dvo_object, dvo_object_band, dvo_measure)

Partitions are nested HEALPix pixels of order :data:`PARTITION_ORDER` (~14 arcmin), so
partitions run as parallel jobs that write disjoint rows; a partition's objects are recomputed
from all its detections, so the result does not depend on the order nights arrive in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy_healpix import HEALPix
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from surveydm.config import Settings, settings_environment
from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.db.models.calibration import Detection
from surveydm.db.models.jobs import Job
from surveydm.db.models.multiepoch import DvoMeasure, DvoObject, DvoObjectBand
from surveydm.db.models.production import Production
from surveydm.db.spatial import HEALPIX_ORDER, healpix_index
from surveydm.orchestration import JobContext, JobManager, Task, register_task, run_local
from surveydm.orchestration.records import job_key

#: HEALPix order of the sky partitions (nside 256, ~14 arcmin pixels).
PARTITION_ORDER = 8
_SHIFT = 2 * (HEALPIX_ORDER - PARTITION_ORDER)
_HP = HEALPix(nside=2**PARTITION_ORDER, order="nested")
DEFAULT_RADIUS_ARCSEC = 1.0


def partition_of(healpix: np.ndarray | int) -> np.ndarray:
    """Partition (nested pixel at :data:`PARTITION_ORDER`) of order-16 HEALPix indices."""
    return np.asarray(healpix, np.int64) >> _SHIFT


def with_neighbours(partitions: set[int]) -> list[int]:
    """The partitions and their 8 neighbours, sorted."""
    out = set(partitions)
    for p in partitions:
        out.update(int(q) for q in _HP.neighbours(p) if q >= 0)
    return sorted(out)


def _nightly_detections(release: str):  # noqa: ANN202
    return (
        select(Detection)
        .join(Production, Production.id == Detection.production_id)
        .where(Production.release == release)
    )


def _range(p: int):  # noqa: ANN202
    return Detection.healpix.between(p << _SHIFT, ((p + 1) << _SHIFT) - 1)


@register_task
class Associate(Task):
    """One association run: a partition job per touched sky partition."""

    name = "associate"
    description = "detection-to-object association of the partitions new detections touch"

    def prolog(self, ctx: JobContext) -> None:
        with ctx.registry.session(write=False) as s:
            done = (
                select(DvoMeasure.detection_id)
                .join(DvoObject, DvoObject.id == DvoMeasure.object_id)
                .where(DvoObject.production_id == ctx.production_id)
            )
            new = (
                _nightly_detections(ctx.config["release"])
                .where(Detection.id.not_in(done))
                .with_only_columns(Detection.healpix)
            )
            touched = {int(p) for p in partition_of(np.array(s.scalars(new).all(), np.int64))}
        for p in with_neighbours(touched):
            ctx.add_subjob("associate_partition", name=f"partition {p}",
                           config={**ctx.config, "partition": p})  # fmt: skip


@register_task
class AssociatePartition(Task):
    """Associate the detections of one sky partition (with a margin) and rewrite its objects."""

    name = "associate_partition"
    description = "detection-to-object association of one HEALPix partition"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        from surveydm.reduction.association import associate, band_means

        p = int(ctx.config["partition"])
        parts = with_neighbours({p})
        with ctx.registry.session(write=False) as s:
            q = _nightly_detections(ctx.config["release"]).where(or_(*(_range(k) for k in parts)))
            rows = s.execute(
                q.with_only_columns(Detection.id, Detection.ra, Detection.dec, Detection.image_id,
                                    Detection.band, Detection.mag, Detection.mag_err,
                                    Detection.flags)
            ).all()  # fmt: skip
        if not rows:
            ctx.on_commit(lambda s: _clear(s, ctx.production_id, p))
            return {"objects": 0, "detections": 0}
        cols = list(zip(*rows, strict=True))
        det_id = np.array(cols[0], np.int64)
        ra, dec = np.array(cols[1], float), np.array(cols[2], float)
        mag = np.array([np.nan if v is None else v for v in cols[5]], float)
        err = np.array([np.nan if v is None else v for v in cols[6]], float)
        flags = np.array(cols[7], np.int64)
        radius = float(ctx.config.get("radius_arcsec", DEFAULT_RADIUS_ARCSEC))
        assoc = associate(ra, dec, np.array(cols[3], np.int64), radius)
        own = partition_of(healpix_index(assoc.ra, assoc.dec)) == p
        means = band_means(assoc.label, np.array(cols[4]), mag, err)

        def record(session: Session) -> None:
            _clear(session, ctx.production_id, p)
            _write(session, ctx.production_id, p, assoc, own, means, det_id, ra, dec, flags)

        ctx.on_commit(record)
        return {"objects": int(own.sum()), "detections": int(own[assoc.label].sum())}


def _clear(session: Session, production_id: int | None, p: int) -> None:
    ids = select(DvoObject.id).where(
        DvoObject.production_id == production_id, DvoObject.partition == p
    )
    session.execute(delete(DvoMeasure).where(DvoMeasure.object_id.in_(ids)))
    session.execute(delete(DvoObjectBand).where(DvoObjectBand.object_id.in_(ids)))
    session.execute(
        delete(DvoObject).where(DvoObject.production_id == production_id, DvoObject.partition == p)
    )


def _write(
    session: Session,
    production_id: int | None,
    p: int,
    assoc: Any,
    own: np.ndarray,
    means: Any,
    det_id: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    flags: np.ndarray,
) -> None:
    """Insert the owned objects, their per-band means and their detections' membership."""
    hp = healpix_index(assoc.ra, assoc.dec)
    n = np.bincount(assoc.label, minlength=assoc.n_objects)
    fl = np.zeros(assoc.n_objects, np.int64)
    np.bitwise_or.at(fl, assoc.label, flags)
    cosd = np.cos(np.radians(assoc.dec))
    dra = ((ra - assoc.ra[assoc.label] + 180) % 360 - 180) * cosd[assoc.label] * 3600
    ddec = (dec - assoc.dec[assoc.label]) * 3600
    sra = np.sqrt(np.bincount(assoc.label, weights=dra**2, minlength=assoc.n_objects) / n)
    sdec = np.sqrt(np.bincount(assoc.label, weights=ddec**2, minlength=assoc.n_objects) / n)
    keep = np.flatnonzero(own)
    rows = [
        {"production_id": production_id, "partition": p, "ra": float(assoc.ra[k]),
         "dec": float(assoc.dec[k]), "healpix": int(hp[k]),
         "ra_error": float(sra[k] / np.sqrt(n[k])) if n[k] > 1 else None,
         "dec_error": float(sdec[k] / np.sqrt(n[k])) if n[k] > 1 else None,
         "n_detections": int(n[k]), "flags": int(fl[k])}
        for k in keep
    ]  # fmt: skip
    if not rows:
        return
    # one multi-row INSERT ... RETURNING (ids in the rows' order) instead of a flush per object
    ids = session.scalars(
        insert(DvoObject).returning(DvoObject.id, sort_by_parameter_order=True), rows
    ).all()
    db_id = dict(zip(keep.tolist(), ids, strict=True))
    bands = [
        {
            "object_id": db_id[int(o)],
            "band": str(b),
            "n_measurements": int(c),
            "mag": _opt(m),
            "mag_error": _opt(e),
        }  # fmt: skip
        for o, b, c, m, e in zip(
            means.obj, means.band, means.n, means.mag, means.mag_error, strict=True
        )  # fmt: skip
        if int(o) in db_id
    ]
    if bands:
        session.execute(insert(DvoObjectBand), bands)
    members = [
        {"detection_id": int(d), "object_id": db_id[int(lab)]}
        for d, lab in zip(det_id, assoc.label, strict=True)
        if int(lab) in db_id
    ]
    if members:
        session.execute(insert(DvoMeasure), members)


def _opt(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


@dataclass
class AssociationSummary:
    """What :func:`run_association` did: production, partitions processed, objects and
    memberships in the production, jobs by status, elapsed seconds."""

    production_id: int
    partitions: int
    objects: int
    measures: int
    jobs_by_status: dict[str, int]
    elapsed_s: float = 0.0


def run_association(
    settings: Settings,
    *,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
    processes: int = 2,
) -> AssociationSummary:
    """Submit and run one ``associate`` job over the nightly detections of
    ``settings.release`` (only the partitions with new detections, and their neighbours).

    Raises:
        ValueError: ``radius_arcsec`` not > 0.
    """
    from surveydm.orchestration.reads import tree_select
    from surveydm.pipelines.productions import get_or_create_production

    if not radius_arcsec > 0:
        raise ValueError(f"the match radius must be > 0 arcsec, got {radius_arcsec}")
    t0 = time.perf_counter()
    url = settings.resolved_database_url
    upgrade(url)
    registry = Registry(url)
    try:
        config = {"radius_arcsec": radius_arcsec, "partition_order": PARTITION_ORDER}
        pid = get_or_create_production(registry, "association", settings.release, config)
        with registry.session(write=False) as s:
            run = 1 + int(s.scalar(select(func.count()).select_from(Job).where(
                Job.task == "associate", Job.production_id == pid)) or 0)  # fmt: skip
        root = JobManager(registry).submit(
            "associate", key=job_key(production=pid, run=run), name=f"associate run {run}",
            config={**config, "release": settings.release}, production_id=pid,
        )  # fmt: skip
        run_local(url, root_job_id=root, processes=processes, env=settings_environment(settings),
                  modules=["surveydm.pipelines.association"])  # fmt: skip
        with registry.session(write=False) as s:
            statuses = s.scalars(select(Job.status).where(Job.id.in_(tree_select(root)))).all()
            n_obj = s.scalar(
                select(func.count()).select_from(DvoObject).where(DvoObject.production_id == pid)
            )
            n_meas = s.scalar(
                select(func.count()).select_from(DvoMeasure)
                .join(DvoObject, DvoObject.id == DvoMeasure.object_id)
                .where(DvoObject.production_id == pid)
            )  # fmt: skip
            n_parts = s.scalar(
                select(func.count()).select_from(Job)
                .where(Job.id.in_(tree_select(root)), Job.task == "associate_partition")
            )  # fmt: skip
        by: dict[str, int] = {}
        for st in statuses:
            by[str(st)] = by.get(str(st), 0) + 1
        return AssociationSummary(pid, int(n_parts or 0), int(n_obj or 0),
                                  int(n_meas or 0), by, time.perf_counter() - t0)  # fmt: skip
    finally:
        registry.dispose()


__all__ = [
    "PARTITION_ORDER",
    "Associate",
    "AssociatePartition",
    "AssociationSummary",
    "partition_of",
    "run_association",
    "with_neighbours",
]
