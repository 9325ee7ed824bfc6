"""Transitions: ending a claimed step (done, waiting, fault, quality failure, lost worker) and
propagating it (dependants queued or skipped, super-jobs woken).

Ending a step is a compare-and-set on its claim token, so a worker whose lease lapsed (or whose
job was aborted) can never overwrite a newer outcome; whoever ends a claim writes its
``job_attempt`` row in the same transaction. Nothing cascades status to parents row by row: a
super-job is woken (``waiting -> queued``) by a single conditional ``UPDATE`` when no sub-job is
left active. Every function takes an open :class:`~sqlalchemy.orm.Session`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, bindparam, func, insert, literal, select, text, update
from sqlalchemy.orm import Session

from surveydm.db.base import utcnow
from surveydm.db.models.jobs import Dependency, Job, JobAttempt, QualityControl, Tag
from surveydm.orchestration.qc import QCResult
from surveydm.orchestration.queue import insert_subjobs
from surveydm.orchestration.records import Claim, LeaseLostError, QCRecord, SubJobSpec, clip
from surveydm.orchestration.status import (
    ACTIVE,
    SATISFIED,
    AttemptOutcome,
    JobStatus,
    Phase,
)
from surveydm.orchestration.wakeup import CHANNEL, announce_ready

J = Job.__table__
D = Dependency.__table__
A = JobAttempt.__table__
TAG = Tag.__table__
QC = QualityControl.__table__

_CAS_CACHE: dict[tuple[str, ...], Any] = {}


def _cas(
    session: Session,
    claim: Claim,
    values: dict[str, Any],
    *,
    wall: float = 0.0,
    started: datetime | None = None,
) -> None:
    """Compare-and-set on the claim token: ``values`` are written only if the job is still
    running under this claim. Statements are built once per set of columns (hot path)."""
    key = tuple(sorted(values)) + (("@started",) if started is not None else ())
    stmt = _CAS_CACHE.get(key)
    if stmt is None:
        sets: dict[str, Any] = {k: bindparam(f"v_{k}") for k in values}
        sets["wall_time"] = J.c.wall_time + bindparam("v_wall", type_=Float)
        if started is not None:
            sets["started"] = func.coalesce(
                J.c.started, bindparam("v_started", type_=J.c.started.type)
            )
        stmt = _CAS_CACHE[key] = (
            update(J)
            .where(
                J.c.id == bindparam("w_id"),
                J.c.token == bindparam("w_token"),
                J.c.status == JobStatus.RUNNING,
            )
            .values(**sets)
        )
    params = {f"v_{k}": v for k, v in values.items()}
    params.update(w_id=claim.id, w_token=claim.token, v_wall=wall)
    if started is not None:
        params["v_started"] = started
    res = session.execute(stmt, params)
    if res.rowcount != 1:
        raise LeaseLostError(f"job {claim.id}: claim {claim.token} no longer held")


def attempt_row(
    claim: Any,
    outcome: AttemptOutcome,
    now: datetime,
    *,
    fault: str | None = None,
    wall: float | None = None,
) -> dict[str, Any]:
    """The ``job_attempt`` row of a claim ending now with ``outcome``. ``claim`` is a
    :class:`Claim` or a ``job`` row with the same names (``id``, ``attempts``, ``phase``,
    ``worker``, ``host``, ``pid``, ``claimed``)."""
    return {
        "job_id": claim.id,
        "attempt": claim.attempts,
        "phase": claim.phase,
        "worker": (claim.worker or "")[:128] or None,
        "host": (claim.host or "")[:128] or None,
        "pid": claim.pid,
        "started": claim.claimed,
        "ended": now,
        "outcome": outcome,
        "fault": clip(fault),
        "wall_time": wall,
    }


_INSERT_ATTEMPTS = insert(A)  # built once: its cache key is memoised (hot path)
_ATTEMPT_COLUMNS = (
    ("job_id", "bigint"),
    ("attempt", "integer"),
    ("phase", "text"),
    ("worker", "text"),
    ("host", "text"),
    ("pid", "integer"),
    ("started", "timestamptz"),
    ("ended", "timestamptz"),
    ("outcome", "text"),
    ("fault", "text"),
    ("wall_time", "float8"),
)
#: PostgreSQL: many attempt rows as ONE statement of fixed text over arrays (a multi-row
#: VALUES list has a different text for every row count, which the driver parses anew).
_INSERT_ATTEMPTS_UNNEST = text(
    f"INSERT INTO job_attempt ({', '.join(c for c, _ in _ATTEMPT_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _ATTEMPT_COLUMNS)})"
)


def record_attempts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``job_attempt`` rows (see :func:`attempt_row`); several rows in one statement
    on PostgreSQL."""
    if len(rows) > 1 and session.get_bind().dialect.name == "postgresql":
        session.execute(
            _INSERT_ATTEMPTS_UNNEST, {c: [r[c] for r in rows] for c, _ in _ATTEMPT_COLUMNS}
        )
    elif rows:
        session.execute(_INSERT_ATTEMPTS, list(rows))


def record_results(
    session: Session,
    job_id: int,
    attempt: int,
    tags: Sequence[tuple[str, str]],
    qc: Sequence[QCRecord],
    now: datetime,
) -> None:
    """Insert the tags and QC rows a step recorded."""
    if tags:
        session.execute(
            insert(TAG),
            [
                {"job_id": job_id, "name": n, "value": v, "attempt": attempt, "time": now}
                for n, v in tags
            ],
        )
    if qc:
        session.execute(
            insert(QC),
            [
                {
                    "job_id": job_id,
                    "check_name": q.check_name,
                    "description": q.description,
                    "value": q.value,
                    "min_value": q.min_value,
                    "max_value": q.max_value,
                    "warn_min": q.warn_min,
                    "warn_max": q.warn_max,
                    "units": q.units,
                    "result": q.result,
                    "qc_pass": q.result != QCResult.FAIL,
                    "reference": q.reference,
                    "plot_file": q.plot_file,
                    "time": q.time,
                }
                for q in qc
            ],
        )


#: EXISTS a sub-job that did not end plain ``done`` (a ``done_partial`` one included: partial
#: goes all the way up the tree).
_CHILD_NOT_DONE = (
    select(literal(1))
    .where(J.c.parent_id == bindparam("job_id"), J.c.status != JobStatus.DONE)
    .exists()
)


def _ended_status(session: Session, claim: Claim) -> JobStatus:
    """``done``, or ``done_partial`` when an epilog ends while some sub-job did not end
    ``done`` (failed, skipped, aborted, or itself ``done_partial``)."""
    if claim.phase != Phase.EPILOG:
        return JobStatus.DONE
    partial = session.execute(select(_CHILD_NOT_DONE), {"job_id": claim.id}).scalar()
    return JobStatus.DONE_PARTIAL if partial else JobStatus.DONE


def complete_step(
    session: Session,
    claim: Claim,
    *,
    output: dict[str, Any] | None,
    subjobs: Sequence[SubJobSpec],
    tags: Sequence[tuple[str, str]],
    qc: Sequence[QCRecord],
    started: datetime,
    wall: float,
    now: datetime | None = None,
) -> JobStatus:
    """Record a successful step: ``waiting`` when it created sub-jobs (inserted here), else
    ``done`` (``done_partial`` for an epilog some of whose sub-jobs did not end done). Wakes
    dependants and the super-job. Returns the new status.

    Raises:
        LeaseLostError: the claim is no longer held (nothing is written; roll back).
    """
    now = now or utcnow()
    common = {"output": output, "token": None, "lease_expires": None}
    if subjobs:
        new = JobStatus.WAITING
        values = {**common, "status": new, "phase": Phase.EPILOG}
        _cas(session, claim, values, wall=wall, started=started)
        insert_subjobs(
            session,
            parent_id=claim.id,
            root_id=claim.root_id or claim.id,
            production_id=claim.production_id,
            specs=subjobs,
            now=now,
        )
    else:
        new = _ended_status(session, claim)
        values = {**common, "status": new, "ended": now}
        _cas(session, claim, values, wall=wall, started=started)
    record_attempts(session, [attempt_row(claim, AttemptOutcome.OK, now, wall=wall)])
    record_results(session, claim.id, claim.attempts, tags, qc, now)
    if new != JobStatus.WAITING:
        promote_dependants(session, [claim.id], now)
        wake_parents(session, [claim.parent_id], now)
        note_settle(session, [claim.id], [claim.parent_id])
    return new


_CAS_DONE_MANY = (
    update(J)
    .where(
        J.c.id == bindparam("w_id"),
        J.c.token == bindparam("w_token"),
        J.c.status == JobStatus.RUNNING,
    )
    .values(
        status=JobStatus.DONE,
        ended=bindparam("v_ended"),
        output=bindparam("v_output"),
        token=None,
        lease_expires=None,
        wall_time=J.c.wall_time + bindparam("v_wall", type_=Float),
        started=func.coalesce(J.c.started, bindparam("v_started", type_=J.c.started.type)),
    )
)


def _pg_group_done_sql() -> Any:
    """PostgreSQL: a whole group commit as ONE statement of fixed text (so the driver prepares
    it once): the compare-and-set of every claim, their ``job_attempt`` rows (built from the
    updated rows), the set-based promotion of their dependants, the wake-up of their super-jobs,
    the :func:`note_settle` checks and the ``NOTIFY``. The claims come as one JSON array
    (``jsonb_to_recordset``): one text parameter instead of one array per column, whose
    per-element encoding cost the pilot ~0.3 ms per job.

    Every part of a data-modifying ``WITH`` sees the snapshot taken before the statement, so
    the jobs ending here still read ``running`` in the dependency and sub-job checks: those
    checks exclude them explicitly (``NOT IN done``).

    The dependants of the group (``ch``) are found once, from the group's dependency edges,
    and both the promotion and the check of the ones left pending start from them: planned
    from the ``pending`` status instead (as the planner did when the two joined ``dependency``
    themselves), that check probed every pending job of the graph for every job of the group,
    ~1 s per group commit in the middle of a 5,000-job tree."""
    active = ", ".join(f"'{s}'" for s in sorted(ACTIVE))
    satisfied = ", ".join(f"'{s}'" for s in sorted(SATISFIED))
    not_running_active = ", ".join(f"'{s}'" for s in _NOT_RUNNING_ACTIVE)
    not_settling = ", ".join(f"'{s}'" for s in _NOT_SETTLING)
    attempt_cols = ", ".join(c for c, _ in _ATTEMPT_COLUMNS)
    return text(
        f"""
        WITH v AS (
            SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
                AS v(id bigint, token text, output jsonb, wall float8, started timestamptz)
        ), done AS (
            UPDATE job SET status = 'done', ended = :now, output = v.output, token = NULL,
                lease_expires = NULL, wall_time = job.wall_time + v.wall,
                started = coalesce(job.started, v.started)
            FROM v
            WHERE job.id = v.id AND job.token = v.token AND job.status = 'running'
            RETURNING job.id, job.attempts, job.phase, job.worker, job.host, job.pid,
                job.claimed, v.wall, job.parent_id
        ), attempts AS (
            INSERT INTO job_attempt ({attempt_cols})
            SELECT id, attempts, phase, worker, host, pid, claimed, :now, 'ok', NULL, wall
            FROM done
        ), ch AS MATERIALIZED (
            SELECT DISTINCT d.child_id FROM dependency d JOIN done ON d.parent_id = done.id
        ), promoted AS (
            UPDATE job SET status = 'queued', queued = :now, not_before = :now
            FROM ch
            WHERE job.id = ch.child_id AND job.status = 'pending'
              AND NOT EXISTS (
                SELECT 1 FROM dependency d2 JOIN job p ON p.id = d2.parent_id
                WHERE d2.child_id = job.id AND p.status NOT IN ({satisfied})
                  AND p.id NOT IN (SELECT id FROM done))
            RETURNING job.id
        ), woken AS (
            UPDATE job SET status = 'queued', queued = :now, not_before = :now, attempts = 0,
                lost = 0
            WHERE job.id IN (SELECT parent_id FROM done) AND job.status = 'waiting'
              AND NOT EXISTS (
                SELECT 1 FROM job c WHERE c.parent_id = job.id AND c.status IN ({active})
                  AND c.id NOT IN (SELECT id FROM done))
            RETURNING job.id
        ), counts AS (
            SELECT (SELECT count(*) FROM done) AS n_done,
                   (SELECT count(*) FROM promoted) + (SELECT count(*) FROM woken) AS n_ready
        )
        SELECT n_done,
            n_ready,
            (SELECT pg_notify('{CHANNEL}', '') WHERE n_ready > 0) AS notified,
            EXISTS (
                SELECT 1 FROM ch JOIN job c ON c.id = ch.child_id
                WHERE c.status = 'pending' AND c.id NOT IN (SELECT id FROM promoted)
                  AND NOT EXISTS (
                    SELECT 1 FROM dependency d2 JOIN job p ON p.id = d2.parent_id
                    WHERE d2.child_id = c.id AND p.status NOT IN ({not_settling}))
            ) AS risky_ids,
            ARRAY(
                SELECT w.id FROM job w
                WHERE w.id IN (SELECT parent_id FROM done) AND w.status = 'waiting'
                  AND w.id NOT IN (SELECT id FROM woken)
                  AND NOT EXISTS (
                    SELECT 1 FROM job c WHERE c.parent_id = w.id
                      AND c.status IN ({not_running_active})
                      AND c.id NOT IN (SELECT id FROM done))
            ) AS risky_parents
        FROM counts
        """
    )


def complete_done_group(
    session: Session,
    items: Sequence[tuple[Claim, dict[str, Any] | None, datetime, float]],
    now: datetime | None = None,
) -> None:
    """Mark several claimed prolog-phase jobs ``done`` at once: ``items`` are (claim, output,
    started, wall seconds). Their compare-and-set, attempt rows, the set-based promotion of
    their dependants and the wake-up of their super-jobs: one statement on PostgreSQL
    (:func:`_pg_group_done_sql`), four on SQLite.

    Raises:
        LeaseLostError: some claim is no longer held (roll back and record one by one).
        ValueError: an epilog-phase claim (it may end ``done_partial``: record it alone).
    """
    now = now or utcnow()
    if any(c.phase != Phase.PROLOG for c, *_ in items):
        raise ValueError("group commit takes prolog-phase claims only")
    if session.get_bind().dialect.name == "postgresql":
        _complete_done_group_pg(session, items, now)
        return
    params = [  # SQLite: executemany is one C loop in the driver
        {
            "w_id": c.id,
            "w_token": c.token,
            "v_ended": now,
            "v_output": out,
            "v_wall": wall,
            "v_started": started,
        }
        for c, out, started, wall in items
    ]
    done = session.execute(_CAS_DONE_MANY, params).rowcount
    if done != len(items):
        raise LeaseLostError(f"{len(items) - done} of {len(items)} claims lost")
    record_attempts(
        session, [attempt_row(c, AttemptOutcome.OK, now, wall=wall) for c, _, _, wall in items]
    )
    ids = [c.id for c, *_ in items]
    parents = [c.parent_id for c, *_ in items]
    promote_dependants(session, ids, now)
    wake_parents(session, parents, now)


_PG_GROUP_DONE: list[Any] = []


def _complete_done_group_pg(
    session: Session,
    items: Sequence[tuple[Claim, dict[str, Any] | None, datetime, float]],
    now: datetime,
) -> None:
    if not _PG_GROUP_DONE:
        _PG_GROUP_DONE.append(_pg_group_done_sql())
    rows = json.dumps(
        [
            {
                "id": c.id,
                "token": c.token,
                "output": out,
                "wall": float(wall),
                "started": started.isoformat(),
            }
            for c, out, started, wall in items
        ]
    )
    r = session.execute(_PG_GROUP_DONE[0], {"rows": rows, "now": now}).one()
    if r.n_done != len(items):
        raise LeaseLostError(f"{len(items) - r.n_done} of {len(items)} claims lost")
    if r.risky_ids or r.risky_parents:
        ids, pids = session.info.setdefault(SETTLE_KEY, (set(), set()))
        if r.risky_ids:
            ids.update(c.id for c, *_ in items)
        pids.update(int(p) for p in r.risky_parents)


def fail_step(
    session: Session,
    claim: Claim,
    *,
    quality: str | None = None,
    fault: str | None = None,
    backoff: float = 0.0,
    tags: Sequence[tuple[str, str]] = (),
    qc: Sequence[QCRecord] = (),
    started: datetime | None = None,
    wall: float = 0.0,
    now: datetime | None = None,
) -> JobStatus:
    """Record a failed step. ``quality`` set: ``failed_quality`` (never retried). Else a fault:
    re-queued after ``backoff`` seconds while the fault budget lasts (``max_attempts`` claims
    not counting lost workers), otherwise ``failed``. Final failures skip the job's dependants
    and may wake its super-job. Returns the new status.

    Raises:
        LeaseLostError: the claim is no longer held (nothing is written; roll back).
    """
    now = now or utcnow()
    common: dict[str, Any] = {"token": None, "lease_expires": None}
    if quality is not None:
        new = JobStatus.FAILED_QUALITY
        values = {**common, "status": new, "quality": clip(quality), "ended": now}
    elif claim.faults + 1 < claim.max_attempts:
        new = JobStatus.QUEUED
        values = {
            **common,
            "status": new,
            "fault": clip(fault),
            "queued": now,
            "not_before": now + timedelta(seconds=max(backoff, 0.0)),
        }
    else:
        new = JobStatus.FAILED
        values = {**common, "status": new, "fault": clip(fault), "ended": now}
    _cas(session, claim, values, wall=wall, started=started)
    if new == JobStatus.QUEUED and backoff <= 0:  # later retries are found by polling
        announce_ready(session)
    outcome = AttemptOutcome.QUALITY if quality is not None else AttemptOutcome.FAULT
    record_attempts(session, [attempt_row(claim, outcome, now, fault=quality or fault, wall=wall)])
    record_results(session, claim.id, claim.attempts, tags, qc, now)
    if new != JobStatus.QUEUED:
        skip_dependants(session, [claim.id], now)
        wake_parents(session, [claim.parent_id], now)
        note_settle(session, [], [claim.parent_id])
    return new


def lose(session: Session, r: Any, now: datetime, *, where: Any, why: str) -> JobStatus | None:
    """Record that the worker of the running job ``r`` was lost (lease expired, Dask worker
    died): the system's fault, not the job's. The claim does not spend the fault budget; it
    counts in ``lost``, and the job fails only once ``max_lost`` workers were lost with it (a
    job that keeps killing its workers is stopped). ``r`` holds the job's ``id``, ``attempts``,
    ``lost``, ``max_lost``, ``phase``, ``worker``, ``host``, ``pid``, ``claimed`` and
    ``parent_id``; ``where`` guards the update (the job must still be that claim). Returns the
    new status (``queued`` or ``failed``), None when the guard no longer holds."""
    n_lost = int(r.lost) + 1
    msg = f"worker {r.worker} lost during attempt {r.attempts} ({why})"
    base = update(J).where(J.c.id == r.id, J.c.status == JobStatus.RUNNING, where)
    common = {"token": None, "lease_expires": None, "lost": n_lost}
    if n_lost >= r.max_lost:
        new = JobStatus.FAILED
        fault = f"{msg}; {n_lost} workers lost with this job: given up"
        res = session.execute(base.values(status=new, ended=now, fault=fault, **common))
    else:
        new, fault = JobStatus.QUEUED, msg
        res = session.execute(
            base.values(status=new, queued=now, not_before=now, fault=fault, **common)
        )
    if res.rowcount != 1:
        return None
    if new == JobStatus.QUEUED:
        announce_ready(session)
    record_attempts(session, [attempt_row(r, AttemptOutcome.LOST, now, fault=fault)])
    if new == JobStatus.FAILED:
        skip_dependants(session, [r.id], now)
        wake_parents(session, [r.parent_id], now)
    return new


#: Columns :func:`lose` needs.
LOST_COLUMNS = (
    J.c.id,
    J.c.attempts,
    J.c.lost,
    J.c.max_lost,
    J.c.phase,
    J.c.worker,
    J.c.host,
    J.c.pid,
    J.c.claimed,
    J.c.parent_id,
)


def lose_claim(session: Session, claim: Claim, why: str) -> JobStatus:
    """:func:`lose` for a claim whose executor saw its worker die (a Dask ``KilledWorker``).

    Raises:
        LeaseLostError: the claim is no longer held.
    """
    guard = J.c.token == claim.token
    r = session.execute(
        select(*LOST_COLUMNS).where(J.c.id == claim.id, J.c.status == JobStatus.RUNNING, guard)
    ).first()
    new = None if r is None else lose(session, r, utcnow(), where=guard, why=why)
    if new is None:
        raise LeaseLostError(f"job {claim.id}: claim {claim.token} no longer held")
    return new


# ------------------------------------------------------------------------------------------
# Propagation (set-based, one statement per level; never a cascade up the tree)

# Core aliases built once: constructing ORM aliases per call costs milliseconds per job.
_P = J.alias("dep_parent")
_C = J.alias("sub")
_D2 = D.alias("dep2")


def blocked_by_unfinished(child_col: Any) -> Any:
    """EXISTS a dependency of ``child_col`` whose parent did not end done (or done_partial)."""
    return (
        select(literal(1))
        .select_from(_D2.join(_P, _P.c.id == _D2.c.parent_id))
        .where(_D2.c.child_id == child_col, _P.c.status.not_in(list(SATISFIED)))
        .exists()
    )


#: EXISTS an active sub-job of the ``job`` row in the statement.
ACTIVE_CHILD = (
    select(literal(1)).where(_C.c.parent_id == J.c.id, _C.c.status.in_(list(ACTIVE))).exists()
)

_PROMOTE = (
    update(J)
    .where(
        J.c.status == JobStatus.PENDING,
        J.c.id.in_(
            select(D.c.child_id)
            .where(D.c.parent_id.in_(bindparam("done_ids", expanding=True)))
            .scalar_subquery()
        ),
        ~blocked_by_unfinished(J.c.id),
    )
    .values(status=JobStatus.QUEUED, queued=bindparam("now"), not_before=bindparam("now"))
)

#: Values of a super-job woken for its epilog (a fresh budget for the new phase).
WAKE_VALUES = {"status": JobStatus.QUEUED, "attempts": 0, "lost": 0}

_WAKE = (
    update(J)
    .where(
        J.c.id.in_(bindparam("parent_ids", expanding=True)),
        J.c.status == JobStatus.WAITING,
        ~ACTIVE_CHILD,
    )
    .values(queued=bindparam("now"), not_before=bindparam("now"), **WAKE_VALUES)
)


def promote_dependants(session: Session, job_ids: Sequence[int], now: datetime) -> int:
    """Queue the pending dependants of ``job_ids`` whose dependencies are now all done."""
    if not job_ids:
        return 0
    res = session.execute(_PROMOTE, {"done_ids": list(job_ids), "now": now})
    if res.rowcount:
        announce_ready(session)
    return res.rowcount or 0


def chunks(seq: Iterable[int], n: int = 5000) -> Iterable[list[int]]:
    """``seq`` in lists of at most ``n`` (bounded ``IN`` lists)."""
    seq = list(seq)
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def skip_dependants(session: Session, job_ids: Sequence[int], now: datetime) -> int:
    """Skip (transitively) the pending dependants of jobs that ended other than done; wake
    the super-jobs of the skipped jobs. Returns the number skipped."""
    total = 0
    frontier = list(job_ids)
    while frontier:
        rows = [
            r
            for chunk in chunks(frontier)
            for r in session.execute(
                select(J.c.id, J.c.parent_id, D.c.parent_id.label("blocker"))
                .join(D, D.c.child_id == J.c.id)
                .where(D.c.parent_id.in_(chunk), J.c.status == JobStatus.PENDING)
            )
        ]
        if not rows:
            break
        blocker = {r.id: r.blocker for r in rows}
        parents = {r.parent_id for r in rows}
        status_of = {
            k: v
            for chunk in chunks(sorted(set(blocker.values())))
            for k, v in session.execute(select(J.c.id, J.c.status).where(J.c.id.in_(chunk)))
        }
        for jid, b in blocker.items():
            session.execute(
                update(J)
                .where(J.c.id == jid, J.c.status == JobStatus.PENDING)
                .values(
                    status=JobStatus.SKIPPED,
                    ended=now,
                    reason=f"dependency {b} ended {status_of.get(b, 'not done')}",
                )
            )
        total += len(blocker)
        frontier = list(blocker)
        wake_parents(session, list(parents), now)
    return total


def wake_parents(session: Session, parent_ids: Sequence[int | None], now: datetime) -> int:
    """Re-queue (for their epilog) the waiting super-jobs among ``parent_ids`` that have no
    active sub-job left. One conditional UPDATE: super-jobs still waiting are not locked."""
    ids = sorted({p for p in parent_ids if p is not None})
    if not ids:
        return 0
    res = session.execute(_WAKE, {"parent_ids": ids, "now": now})
    if res.rowcount:
        announce_ready(session)
    return res.rowcount or 0


#: ``session.info`` key of the (job ids, parent ids) to settle after commit.
SETTLE_KEY = "surveydm_settle"
_NOT_RUNNING_ACTIVE = sorted(ACTIVE - {JobStatus.RUNNING})
_NOT_SETTLING = sorted(SATISFIED | {JobStatus.RUNNING})


#: Waiting super-jobs among ``parent_ids`` whose remaining active sub-jobs are all running
#: (built once: hot path of every completion).
_RISKY_PARENTS = select(J.c.id).where(
    J.c.id.in_(bindparam("parent_ids", expanding=True)),
    J.c.status == JobStatus.WAITING,
    ~select(literal(1))
    .where(_C.c.parent_id == J.c.id, _C.c.status.in_(_NOT_RUNNING_ACTIVE))
    .exists(),
)
#: Any pending dependant of ``done_ids`` whose unfinished dependencies are all running.
_RISKY_IDS = (
    select(literal(1))
    .select_from(D.join(J, J.c.id == D.c.child_id))
    .where(
        D.c.parent_id.in_(bindparam("done_ids", expanding=True)),
        J.c.status == JobStatus.PENDING,
        ~select(literal(1))
        .select_from(_D2.join(_P, _P.c.id == _D2.c.parent_id))
        .where(_D2.c.child_id == J.c.id, _P.c.status.not_in(_NOT_SETTLING))
        .exists(),
    )
    .limit(1)
)


def note_settle(session: Session, job_ids: Sequence[int], parent_ids: Sequence[int | None]) -> None:
    """On PostgreSQL, note in ``session.info[SETTLE_KEY]`` what :func:`settle` must re-check
    right after this transaction commits.

    Under READ COMMITTED two sub-jobs ending at the same instant each see the other still
    ``running``, so neither wakes their super-job (likewise two last dependencies of a pending
    job). That can only happen when every remaining active sibling (every unfinished
    dependency) is ``running``: exactly then the ids are noted, and the same promotion / wake-up
    re-run after commit; the later of the concurrent re-runs sees both commits. SQLite
    serialises writers, so nothing is noted there.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    parents = sorted({p for p in parent_ids if p is not None})
    risky_parents: list[int] = []
    if parents:
        risky_parents = [
            int(r[0]) for r in session.execute(_RISKY_PARENTS, {"parent_ids": parents})
        ]
    risky_ids: list[int] = []
    if job_ids and session.execute(_RISKY_IDS, {"done_ids": list(job_ids)}).first() is not None:
        risky_ids = list(job_ids)
    if risky_parents or risky_ids:
        ids, pids = session.info.setdefault(SETTLE_KEY, (set(), set()))
        ids.update(risky_ids)
        pids.update(risky_parents)


def settle(session: Session, job_ids: Sequence[int], parent_ids: Sequence[int]) -> None:
    """Re-run the promotion of ``job_ids``' dependants and the wake-up of ``parent_ids`` (after
    the transaction that ended them committed; see :func:`note_settle`)."""
    now = utcnow()
    promote_dependants(session, list(job_ids), now)
    wake_parents(session, list(parent_ids), now)
