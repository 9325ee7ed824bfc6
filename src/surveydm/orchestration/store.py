"""Database operations of the job system: submit, claim, finish, sweep, abort, retry, and the
derived status of job trees.

Every function takes an open :class:`~sqlalchemy.orm.Session` (a short transaction the caller
commits) or a :class:`~surveydm.db.Registry`. Hot paths use Core statements on ``job`` rather
than ORM objects: a claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING`` on PostgreSQL (one ``BEGIN IMMEDIATE`` transaction on SQLite), and ending a job is a
compare-and-set on its claim token, so a worker whose lease lapsed (or whose job was aborted)
can never overwrite a newer outcome.

Nothing cascades status to parents row by row: a super-job is woken (``waiting -> queued``) by a
single conditional ``UPDATE`` when no sub-job is left active, and its progress is read by
aggregate (:func:`status_summary`). The rare races between concurrent finishers on PostgreSQL
(two last sub-jobs, two last dependencies) are closed by :func:`sweep`, which idle pilots run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from surveydm.db import Registry
from surveydm.db.base import utcnow
from surveydm.db.models.jobs import Dependency, Job, QualityControl, Tag
from surveydm.errors import SurveydmError
from surveydm.orchestration import status as S
from surveydm.orchestration.tasks import QCRecord, SubJobInfo, SubJobSpec, get_task

J = Job.__table__
D = Dependency.__table__
TAG = Tag.__table__
QC = QualityControl.__table__

#: Longest text kept in ``fault``/``quality``/``reason`` columns (tracebacks go to tags).
MAX_MESSAGE = 4000


class JobNotFoundError(SurveydmError):
    """No job with the given id."""


class JobStateError(SurveydmError):
    """The operation does not apply to the job in its current status."""


def aware(dt: datetime | None) -> datetime | None:
    """``dt`` as a timezone-aware UTC datetime (SQLite returns naive UTC values)."""
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


# ------------------------------------------------------------------------------------------
# Creating jobs


def submit(
    registry: Registry,
    task: str,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    input: dict[str, Any] | None = None,  # noqa: A002
    production_id: int | None = None,
    max_attempts: int | None = None,
    check_task: bool = True,
) -> int:
    """Create a top-level job of task type ``task``, ready to be claimed; returns its id.

    ``check_task`` verifies that ``task`` is registered in this process (load its module
    first with :func:`~surveydm.orchestration.load_task_modules`); pass False to queue work for
    workers that know task types this process does not.

    Raises:
        UnknownTaskError: ``check_task`` and ``task`` is not registered.
        ValueError: ``config`` or ``input`` is not a dict.
    """
    attempts = max_attempts
    if check_task:
        cls = get_task(task)
        attempts = attempts or cls.max_attempts
    for label, value in (("config", config), ("input", input)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{label} must be a JSON object (dict), got {type(value).__name__}")
    now = utcnow()
    with registry.session() as s:
        job_id = s.execute(
            insert(J)
            .values(
                task=task,
                name=name or task,
                config=dict(config or {}),
                input=dict(input or {}),
                status=S.QUEUED,
                phase=S.PHASE_PROLOG,
                production_id=production_id,
                created=now,
                queued=now,
                not_before=now,
                attempts=0,
                max_attempts=int(attempts or 3),
                valid=True,
                wall_time=0.0,
            )
            .returning(J.c.id)
        ).scalar_one()
        s.execute(update(J).where(J.c.id == job_id).values(root_id=job_id))
    return int(job_id)


def insert_subjobs(
    session: Session,
    *,
    parent_id: int,
    root_id: int,
    production_id: int | None,
    specs: Sequence[SubJobSpec],
    now: datetime,
) -> list[int]:
    """Bulk-insert the sub-jobs of ``parent_id`` and their dependencies; returns their ids in
    the order of ``specs``. Sub-jobs without dependencies are ``queued``, others ``pending``."""
    if not specs:
        return []
    rows = [
        {
            "task": sp.task,
            "name": sp.name,
            "config": sp.config,
            "input": sp.input,
            "status": S.PENDING if sp.after else S.QUEUED,
            "phase": S.PHASE_PROLOG,
            "parent_id": parent_id,
            "root_id": root_id,
            "production_id": production_id,
            "created": now,
            "queued": None if sp.after else now,
            "not_before": now,
            "attempts": 0,
            "max_attempts": sp.max_attempts,
            "valid": True,
            "wall_time": 0.0,
        }
        for sp in specs
    ]
    if session.get_bind().dialect.name == "postgresql" and len(rows) >= COPY_THRESHOLD:
        return _copy_subjobs(session, rows, specs, parent_id)
    ids = [
        int(i)
        for i in session.execute(
            insert(J).returning(J.c.id, sort_by_parameter_order=True), rows
        ).scalars()
    ]
    deps = [
        {"parent_id": ids[p], "child_id": ids[c], "super_id": parent_id}
        for c, sp in enumerate(specs)
        for p in sp.after
    ]
    if deps:
        session.execute(insert(D), deps)
    return ids


#: From this many sub-jobs on, PostgreSQL inserts them with COPY (ids drawn from the sequence).
COPY_THRESHOLD = 2000


def _copy_subjobs(
    session: Session, rows: list[dict[str, Any]], specs: Sequence[SubJobSpec], parent_id: int
) -> list[int]:
    """PostgreSQL bulk path: draw ids from ``job``'s sequence, then ``COPY`` the jobs and their
    dependencies (several times faster than multi-row INSERT for 10^5 rows)."""
    import json

    n = len(rows)
    ids = [
        int(i)
        for i in session.execute(
            text("SELECT nextval(pg_get_serial_sequence('job', 'id')) FROM generate_series(1, :n)"),
            {"n": n},
        ).scalars()
    ]
    cols = list(rows[0])
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY job (id, {', '.join(cols)}) FROM STDIN") as copy:
            for jid, row in zip(ids, rows, strict=True):
                copy.write_row(
                    [jid]
                    + [json.dumps(row[c]) if c in ("config", "input") else row[c] for c in cols]
                )
        deps = [(ids[p], ids[c], parent_id) for c, sp in enumerate(specs) for p in sp.after]
        if deps:
            with cur.copy("COPY dependency (parent_id, child_id, super_id) FROM STDIN") as copy:
                for d in deps:
                    copy.write_row(d)
    return ids


# ------------------------------------------------------------------------------------------
# Claiming


@dataclass(frozen=True)
class Claim:
    """A job claimed by a worker: what executing it needs (internal to pilots/executors)."""

    id: int
    task: str
    name: str
    config: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any] | None
    production_id: int | None
    phase: str
    attempts: int
    max_attempts: int
    parent_id: int | None
    root_id: int | None
    token: str
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (to ship to a Dask worker)."""
        return dict(self.__dict__)


def _tree_filter(root_id: int | None) -> ColumnElement[bool]:
    return J.c.root_id == root_id if root_id is not None else literal(True)


def claim(
    session: Session,
    *,
    worker: str,
    host: str,
    pid: int,
    lease_seconds: float,
    limit: int = 1,
    tasks: Sequence[str] | None = None,
    root_id: int | None = None,
    now: datetime | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` ready jobs (``queued`` and ``not_before <= now``), oldest first.

    On PostgreSQL the candidate rows are locked ``FOR UPDATE SKIP LOCKED`` so concurrent
    pilots never wait for or collide with each other; on SQLite the caller's transaction is
    ``BEGIN IMMEDIATE`` (one writer at a time), so the same statement is race-free. Each claimed
    job gets status ``running``, one more attempt, the worker identity, a fresh claim token and
    a lease of ``lease_seconds``.
    """
    now = now or utcnow()
    conds = [J.c.status == S.QUEUED, J.c.not_before <= now, _tree_filter(root_id)]
    if tasks is not None:
        conds.append(J.c.task.in_(list(tasks)))
    pick = (
        select(J.c.id)
        .where(and_(*conds))
        .order_by(J.c.id)
        .limit(int(limit))
        .with_for_update(skip_locked=True)
    )
    token = uuid.uuid4().hex
    stmt = (
        update(J)
        .where(J.c.id.in_(pick.scalar_subquery()))
        .values(
            status=S.RUNNING,
            attempts=J.c.attempts + 1,
            worker=worker[:128],
            host=host[:128],
            pid=pid,
            token=token,
            lease_expires=now + timedelta(seconds=lease_seconds),
        )
        .returning(
            J.c.id,
            J.c.task,
            J.c.name,
            J.c.config,
            J.c.input,
            J.c.output,
            J.c.production_id,
            J.c.phase,
            J.c.attempts,
            J.c.max_attempts,
            J.c.parent_id,
            J.c.root_id,
        )
    )
    out = [
        Claim(
            id=r.id,
            task=r.task,
            name=r.name,
            config=r.config or {},
            input=r.input or {},
            output=r.output,
            production_id=r.production_id,
            phase=r.phase,
            attempts=r.attempts,
            max_attempts=r.max_attempts,
            parent_id=r.parent_id,
            root_id=r.root_id,
            token=token,
            worker=worker,
        )
        for r in session.execute(stmt)
    ]
    out.sort(key=lambda c: c.id)
    return out


def renew_leases(
    session: Session, tokens: Iterable[str], lease_seconds: float, now: datetime | None = None
) -> set[int]:
    """Extend the leases of the running jobs claimed under ``tokens``; returns the ids of
    those still held (a job missing from the answer was aborted or its lease was taken)."""
    tokens = list(tokens)
    if not tokens:
        return set()
    now = now or utcnow()
    rows = session.execute(
        update(J)
        .where(J.c.token.in_(tokens), J.c.status == S.RUNNING)
        .values(lease_expires=now + timedelta(seconds=lease_seconds))
        .returning(J.c.id)
    )
    return {int(r[0]) for r in rows}


# ------------------------------------------------------------------------------------------
# Ending a step


class LeaseLostError(Exception):
    """The job is no longer held under this claim (aborted, or lease expired and re-claimed)."""


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
                J.c.status == S.RUNNING,
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


def _records(
    session: Session,
    job_id: int,
    attempt: int,
    tags: Sequence[tuple[str, str]],
    qc: Sequence[QCRecord],
    now: datetime,
) -> None:
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
                    "qc_pass": q.result != "fail",
                    "reference": q.reference,
                    "plot_file": q.plot_file,
                    "time": q.time,
                }
                for q in qc
            ],
        )


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
) -> str:
    """Record a successful step: ``done``, or ``waiting`` when it created sub-jobs (inserted
    here). Wakes dependants and the super-job. Returns the new status.

    Raises:
        LeaseLostError: the claim is no longer held (nothing is written; roll back).
    """
    now = now or utcnow()
    common = {
        "output": output,
        "token": None,
        "lease_expires": None,
    }
    if subjobs:
        _cas(
            session,
            claim,
            {**common, "status": S.WAITING, "phase": S.PHASE_EPILOG},
            wall=wall,
            started=started,
        )
        insert_subjobs(
            session,
            parent_id=claim.id,
            root_id=claim.root_id or claim.id,
            production_id=claim.production_id,
            specs=subjobs,
            now=now,
        )
        new = S.WAITING
    else:
        _cas(session, claim, {**common, "status": S.DONE, "ended": now}, wall=wall, started=started)
        new = S.DONE
    _records(session, claim.id, claim.attempts, tags, qc, now)
    if new == S.DONE:
        promote_dependants(session, [claim.id], now)
        wake_parents(session, [claim.parent_id], now)
        note_settle(session, [claim.id], [claim.parent_id])
    return new


_CAS_DONE_MANY = (
    update(J)
    .where(
        J.c.id == bindparam("w_id"),
        J.c.token == bindparam("w_token"),
        J.c.status == S.RUNNING,
    )
    .values(
        status=S.DONE,
        ended=bindparam("v_ended"),
        output=bindparam("v_output"),
        token=None,
        lease_expires=None,
        wall_time=J.c.wall_time + bindparam("v_wall", type_=Float),
        started=func.coalesce(J.c.started, bindparam("v_started", type_=J.c.started.type)),
    )
)


def complete_done_group(
    session: Session,
    items: Sequence[tuple[Claim, dict[str, Any] | None, datetime, float]],
    now: datetime | None = None,
) -> None:
    """Mark several claimed jobs ``done`` at once: ``items`` are (claim, output, started,
    wall seconds). One compare-and-set ``executemany``, then set-based promotion of their
    dependants and wake-up of their super-jobs.

    Raises:
        LeaseLostError: some claim is no longer held (roll back and record one by one).
    """
    now = now or utcnow()
    params = [
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
    res = session.execute(_CAS_DONE_MANY, params)
    if res.rowcount != len(items):
        raise LeaseLostError(f"{len(items) - res.rowcount} of {len(items)} claims lost")
    ids = [c.id for c, *_ in items]
    parents = [c.parent_id for c, *_ in items]
    promote_dependants(session, ids, now)
    wake_parents(session, parents, now)
    note_settle(session, ids, parents)


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
) -> str:
    """Record a failed step. ``quality`` set: ``failed_quality`` (never retried). Else a fault:
    re-queued after ``backoff`` seconds while attempts remain, otherwise ``failed``. Final
    failures skip the job's dependants and may wake its super-job. Returns the new status.

    Raises:
        LeaseLostError: the claim is no longer held (nothing is written; roll back).
    """
    now = now or utcnow()
    common: dict[str, Any] = {
        "token": None,
        "lease_expires": None,
    }
    if quality is not None:
        new = S.FAILED_QUALITY
        _cas(
            session,
            claim,
            {**common, "status": new, "quality": _clip(quality), "ended": now},
            wall=wall,
            started=started,
        )
    elif claim.attempts < claim.max_attempts:
        new = S.QUEUED
        _cas(
            session,
            claim,
            {
                **common,
                "status": new,
                "fault": _clip(fault),
                "queued": now,
                "not_before": now + timedelta(seconds=max(backoff, 0.0)),
            },
            wall=wall,
            started=started,
        )
    else:
        new = S.FAILED
        _cas(
            session,
            claim,
            {**common, "status": new, "fault": _clip(fault), "ended": now},
            wall=wall,
            started=started,
        )
    _records(session, claim.id, claim.attempts, tags, qc, now)
    if new != S.QUEUED:
        skip_dependants(session, [claim.id], now)
        wake_parents(session, [claim.parent_id], now)
        note_settle(session, [], [claim.parent_id])
    return new


# ------------------------------------------------------------------------------------------
# Propagation (set-based, one statement per level; never a cascade up the tree)


# Core aliases built once: constructing ORM aliases per call costs milliseconds per job.
_P = J.alias("dep_parent")
_C = J.alias("sub")
_D2 = D.alias("dep2")


def _blocked_by_unfinished(child_col: Any) -> Any:
    """EXISTS a dependency of ``child_col`` whose parent is not ``done``."""
    return (
        select(literal(1))
        .select_from(_D2.join(_P, _P.c.id == _D2.c.parent_id))
        .where(_D2.c.child_id == child_col, _P.c.status != S.DONE)
        .exists()
    )


_ACTIVE_CHILD = (
    select(literal(1)).where(_C.c.parent_id == J.c.id, _C.c.status.in_(S.ACTIVE)).exists()
)

_PROMOTE = (
    update(J)
    .where(
        J.c.status == S.PENDING,
        J.c.id.in_(
            select(D.c.child_id)
            .where(D.c.parent_id.in_(bindparam("done_ids", expanding=True)))
            .scalar_subquery()
        ),
        ~_blocked_by_unfinished(J.c.id),
    )
    .values(status=S.QUEUED, queued=bindparam("now"), not_before=bindparam("now"))
)

_WAKE = (
    update(J)
    .where(
        J.c.id.in_(bindparam("parent_ids", expanding=True)),
        J.c.status == S.WAITING,
        ~_ACTIVE_CHILD,
    )
    .values(status=S.QUEUED, queued=bindparam("now"), not_before=bindparam("now"), attempts=0)
)


def promote_dependants(session: Session, job_ids: Sequence[int], now: datetime) -> int:
    """Queue the pending dependants of ``job_ids`` whose dependencies are now all ``done``."""
    if not job_ids:
        return 0
    res = session.execute(_PROMOTE, {"done_ids": list(job_ids), "now": now})
    return res.rowcount or 0


def skip_dependants(session: Session, job_ids: Sequence[int], now: datetime) -> int:
    """Skip (transitively) the pending dependants of jobs that ended other than ``done``; wake
    the super-jobs of the skipped jobs. Returns the number skipped."""
    total = 0
    frontier = list(job_ids)
    while frontier:
        rows = [
            r
            for chunk in _chunks(frontier, 5000)
            for r in session.execute(
                select(J.c.id, J.c.parent_id, D.c.parent_id.label("blocker"))
                .join(D, D.c.child_id == J.c.id)
                .where(D.c.parent_id.in_(chunk), J.c.status == S.PENDING)
            )
        ]
        if not rows:
            break
        blocker = {r.id: r.blocker for r in rows}
        parents = {r.parent_id for r in rows}
        status_of = {
            k: v
            for chunk in _chunks(sorted(set(blocker.values())), 5000)
            for k, v in session.execute(select(J.c.id, J.c.status).where(J.c.id.in_(chunk)))
        }
        for jid, b in blocker.items():
            session.execute(
                update(J)
                .where(J.c.id == jid, J.c.status == S.PENDING)
                .values(
                    status=S.SKIPPED,
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
    return res.rowcount or 0


#: ``session.info`` key of the (job ids, parent ids) to settle after commit.
SETTLE_KEY = "surveydm_settle"


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
            int(r[0])
            for r in session.execute(
                select(J.c.id).where(
                    J.c.id.in_(parents),
                    J.c.status == S.WAITING,
                    ~select(literal(1))
                    .where(
                        _C.c.parent_id == J.c.id,
                        _C.c.status.in_([s for s in S.ACTIVE if s != S.RUNNING]),
                    )
                    .exists(),
                )
            )
        ]
    risky_ids: list[int] = []
    if job_ids:
        risky = session.execute(
            select(literal(1))
            .select_from(D.join(J, J.c.id == D.c.child_id))
            .where(
                D.c.parent_id.in_(list(job_ids)),
                J.c.status == S.PENDING,
                ~select(literal(1))
                .select_from(_D2.join(_P, _P.c.id == _D2.c.parent_id))
                .where(_D2.c.child_id == J.c.id, _P.c.status.not_in([S.DONE, S.RUNNING]))
                .exists(),
            )
            .limit(1)
        ).first()
        if risky is not None:
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


@dataclass
class SweepResult:
    """What one :func:`sweep` changed."""

    requeued_lost: int = 0
    failed_lost: int = 0
    promoted: int = 0
    skipped: int = 0
    woken: int = 0

    @property
    def changed(self) -> int:
        """Total rows changed."""
        return self.requeued_lost + self.failed_lost + self.promoted + self.skipped + self.woken


#: Advisory-lock key serialising full sweeps on PostgreSQL ("SDMSWEEP" in ASCII, as int).
SWEEP_LOCK_KEY = 0x53444D5357454550


def sweep(
    session: Session, *, now: datetime | None = None, limit: int = 10_000, full: bool = True
) -> SweepResult:
    """Maintenance run by idle pilots (idempotent, safe concurrently):

    1. jobs whose lease expired (their worker was killed or lost) go back to the queue, or
       end ``failed`` when they used all their attempts (an index range scan: cheap);
    2. (``full``) pending jobs whose dependencies all ended are queued (or skipped);
    3. (``full``) waiting super-jobs with no active sub-job are queued for their epilog.

    Steps 2 and 3 only repair what a finishing job normally does itself (they close the race of
    two last dependencies ending at the same instant on PostgreSQL, and manual edits); they
    scan the pending and waiting jobs, so pilots run them rarely, and on PostgreSQL one pilot at
    a time (``pg_try_advisory_xact_lock``: the others skip them).
    """
    now = now or utcnow()
    out = SweepResult()
    lost = session.execute(
        select(J.c.id, J.c.attempts, J.c.max_attempts, J.c.worker, J.c.parent_id)
        .where(J.c.status == S.RUNNING, J.c.lease_expires < now)
        .order_by(J.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    final_ids, final_parents = [], []
    for r in lost:
        msg = f"lease expired: worker {r.worker} lost during attempt {r.attempts}"
        base = update(J).where(J.c.id == r.id, J.c.status == S.RUNNING, J.c.lease_expires < now)
        common = {"token": None, "lease_expires": None, "fault": msg}
        if r.attempts >= r.max_attempts:
            session.execute(base.values(status=S.FAILED, ended=now, **common))
            final_ids.append(r.id)
            final_parents.append(r.parent_id)
            out.failed_lost += 1
        else:
            session.execute(base.values(status=S.QUEUED, queued=now, not_before=now, **common))
            out.requeued_lost += 1
    if final_ids:
        out.skipped += skip_dependants(session, final_ids, now)
        out.woken += wake_parents(session, final_parents, now)

    if not full:
        return out
    if (
        session.get_bind().dialect.name == "postgresql"
        and not session.execute(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK_KEY))).scalar_one()
    ):
        return out  # another pilot is doing it

    # 2. dependencies: skip the blocked-for-good first, then queue the ready.
    dead = (
        select(J.c.id)
        .where(
            J.c.status == S.PENDING,
            select(literal(1))
            .select_from(_D2.join(_P, _P.c.id == _D2.c.parent_id))
            .where(
                _D2.c.child_id == J.c.id,
                _P.c.status.in_([s for s in S.FINAL if s != S.DONE]),
            )
            .exists(),
        )
        .limit(limit)
    )
    blockers = [
        int(r[0])
        for r in session.execute(
            select(D.c.parent_id)
            .join(J, J.c.id == D.c.parent_id)
            .where(D.c.child_id.in_(dead.scalar_subquery()), J.c.status != S.DONE)
            .distinct()
        )
    ]
    if blockers:
        out.skipped += skip_dependants(session, blockers, now)
    res = session.execute(
        update(J)
        .where(J.c.status == S.PENDING, ~_blocked_by_unfinished(J.c.id))
        .values(status=S.QUEUED, queued=now, not_before=now)
    )
    out.promoted += res.rowcount or 0

    # 3. super-jobs whose sub-jobs all ended.
    res = session.execute(
        update(J)
        .where(J.c.status == S.WAITING, ~_ACTIVE_CHILD)
        .values(status=S.QUEUED, queued=now, not_before=now, attempts=0)
    )
    out.woken += res.rowcount or 0
    return out


# ------------------------------------------------------------------------------------------
# Trees, summaries, operator actions


def _get(session: Session, job_id: int) -> Any:
    row = session.execute(select(J).where(J.c.id == job_id)).first()
    if row is None:
        raise JobNotFoundError(f"no job with id {job_id}")
    return row


def tree_select(job_id: int, *, include_self: bool = True) -> Select[Any]:
    """SELECT of the ids of ``job_id``'s descendants (recursive CTE over ``parent_id``)."""
    base = select(J.c.id).where(J.c.parent_id == job_id).cte("tree", recursive=True)
    base = base.union_all(select(J.c.id).where(J.c.parent_id == base.c.id))
    sel = select(base.c.id)
    if include_self:
        sel = sel.union_all(select(literal(job_id)))
    return sel


def _descendant_filter(row: Any) -> ColumnElement[bool]:
    """Condition on ``job`` selecting the strict descendants of ``row``."""
    if row.root_id == row.id:
        return and_(J.c.root_id == row.id, J.c.id != row.id)
    return J.c.id.in_(tree_select(row.id, include_self=False).scalar_subquery())


@dataclass(frozen=True)
class Summary:
    """Derived status of a job and its sub-job tree (by aggregate query, never stored).

    Attributes:
        job_id, task, name: the job.
        status: the job's own status.
        state: overall state: the own status once final; ``running`` while it or any sub-job
            is under way; else the own status (``queued``/``pending``).
        counts: number of sub-jobs (whole tree, the job itself excluded) per status; every
            status in :data:`surveydm.orchestration.status.ALL` is a key.
        total: number of sub-jobs in the tree.
        done_fraction: done / total (the job's own done-ness when it has no sub-jobs).
        finished_fraction: sub-jobs in a final status / total.
        qc: ``green`` (no QC warning or failure in the tree), ``yellow`` (a warning), ``red``
            (a failed check or a quality failure).
        qc_counts: QC rows per result (``pass``, ``warn``, ``fail``) in the tree.
    """

    job_id: int
    task: str
    name: str
    status: str
    state: str
    counts: dict[str, int]
    total: int
    done_fraction: float
    finished_fraction: float
    qc: str
    qc_counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Sub-jobs that ended failed or failed_quality."""
        return self.counts[S.FAILED] + self.counts[S.FAILED_QUALITY]


def summarize(session: Session, job_id: int) -> Summary:
    """:func:`status_summary` within an open session."""
    row = _get(session, job_id)
    desc = _descendant_filter(row)
    counts = dict.fromkeys(S.ALL, 0)
    for st, n in session.execute(select(J.c.status, func.count()).where(desc).group_by(J.c.status)):
        counts[st] = counts.get(st, 0) + int(n)
    total = sum(counts.values())
    tree_ids = (
        select(J.c.id).where(or_(desc, J.c.id == row.id))
        if row.root_id == row.id
        else tree_select(row.id)
    )
    qc_counts = {"pass": 0, "warn": 0, "fail": 0}
    for res, n in session.execute(
        select(QC.c.result, func.count())
        .where(QC.c.job_id.in_(tree_ids.scalar_subquery()))
        .group_by(QC.c.result)
    ):
        qc_counts[res] = int(n)
    quality_failed = counts[S.FAILED_QUALITY] + (row.status == S.FAILED_QUALITY)
    qc = (
        "red"
        if qc_counts["fail"] or quality_failed
        else ("yellow" if qc_counts["warn"] else "green")
    )
    finished = sum(counts[s] for s in S.FINAL)
    if total:
        done_fraction, finished_fraction = counts[S.DONE] / total, finished / total
    else:
        done_fraction = 1.0 if row.status == S.DONE else 0.0
        finished_fraction = 1.0 if row.status in S.FINAL else 0.0
    if row.status in S.FINAL:
        state = row.status
    elif row.status in (S.RUNNING, S.WAITING) or counts[S.RUNNING] or counts[S.WAITING]:
        state = S.RUNNING
    else:
        state = row.status
    return Summary(
        job_id=row.id,
        task=row.task,
        name=row.name,
        status=row.status,
        state=state,
        counts=counts,
        total=total,
        done_fraction=done_fraction,
        finished_fraction=finished_fraction,
        qc=qc,
        qc_counts=qc_counts,
    )


def status_summary(registry: Registry, job_id: int) -> Summary:
    """Counts per status of ``job_id``'s sub-job tree, done fraction and QC flag.

    One ``GROUP BY status`` over the ``(root_id, status)`` index for a top-level job (a
    recursive CTE over ``parent_id`` for an inner one) plus one over its QC rows.

    Raises:
        JobNotFoundError: no such job.
    """
    with registry.session(write=False) as s:
        return summarize(s, job_id)


def subjob_infos(session: Session, job_id: int) -> list[SubJobInfo]:
    """Direct sub-jobs of ``job_id`` with their outcome, by id."""
    rows = session.execute(
        select(
            J.c.id,
            J.c.task,
            J.c.name,
            J.c.status,
            J.c.input,
            J.c.output,
            J.c.fault,
            J.c.quality,
            J.c.reason,
        )
        .where(J.c.parent_id == job_id)
        .order_by(J.c.id)
    )
    return [
        SubJobInfo(
            id=r.id,
            task=r.task,
            name=r.name,
            status=r.status,
            input=r.input or {},
            output=r.output,
            fault=r.fault,
            quality=r.quality,
            reason=r.reason,
        )
        for r in rows
    ]


def abort(registry: Registry, job_id: int, *, reason: str = "aborted by operator") -> int:
    """Abort ``job_id`` and every active job of its sub-job tree; returns how many were aborted.

    Running jobs are marked at once; their workers notice at the next heartbeat and their
    results are discarded (the end-of-step compare-and-set fails). Dependants outside the
    aborted set are skipped and the super-job is woken for its epilog.

    Raises:
        JobNotFoundError: no such job.
        JobStateError: the job and its whole tree already ended.
    """
    now = utcnow()
    with registry.session() as s:
        row = _get(s, job_id)
        desc = _descendant_filter(row)
        ids = [
            int(r[0])
            for r in s.execute(
                select(J.c.id).where(or_(desc, J.c.id == row.id), J.c.status.in_(S.ACTIVE))
            )
        ]
        if not ids:
            raise JobStateError(f"job {job_id} and its sub-jobs already ended ({row.status})")
        for chunk in _chunks(ids, 5000):
            s.execute(
                update(J)
                .where(J.c.id.in_(chunk), J.c.status.in_(S.ACTIVE))
                .values(
                    status=S.ABORTED,
                    reason=reason,
                    ended=now,
                    token=None,
                    lease_expires=None,
                )
            )
        skip_dependants(s, ids, now)
        wake_parents(s, [row.parent_id], now)
    return len(ids)


def retry(registry: Registry, job_id: int) -> int:
    """Put a failed job back in the queue, or all failed/skipped/aborted jobs of a super-job's
    tree; their ended super-jobs go back to ``waiting`` so their epilogs run again. Returns the
    number of jobs re-queued (attempts reset; past faults stay in the tags).

    Raises:
        JobNotFoundError: no such job.
        JobStateError: nothing in the tree can be retried.
    """
    now = utcnow()
    with registry.session() as s:
        row = _get(s, job_id)
        desc = _descendant_filter(row)
        rows = s.execute(
            select(J.c.id, J.c.parent_id).where(
                or_(desc, J.c.id == row.id), J.c.status.in_(S.RETRYABLE)
            )
        ).all()
        if not rows:
            raise JobStateError(
                f"job {job_id} ({row.status}) has no failed, skipped or aborted job to retry"
            )
        ids = [int(r.id) for r in rows]
        with_deps = {
            int(r[0])
            for chunk in _chunks(ids, 5000)
            for r in s.execute(select(D.c.child_id).where(D.c.child_id.in_(chunk)).distinct())
        }
        reset = {
            "attempts": 0,
            "fault": None,
            "quality": None,
            "reason": None,
            "ended": None,
            "token": None,
            "lease_expires": None,
            "not_before": now,
        }
        for chunk in _chunks(ids, 5000):
            s.execute(
                update(J)
                .where(J.c.id.in_(chunk))
                .values(
                    status=case((J.c.id.in_(with_deps), S.PENDING), else_=S.QUEUED),
                    queued=case((J.c.id.in_(with_deps), None), else_=now),
                    **reset,
                )
            )
        # Ended ancestors of retried jobs wait again for their epilog.
        ancestors: set[int] = set()
        frontier = {int(r.parent_id) for r in rows if r.parent_id is not None} - set(ids)
        while frontier:
            ancestors |= frontier
            frontier = {
                int(p)
                for (p,) in s.execute(
                    select(J.c.parent_id).where(J.c.id.in_(frontier), J.c.parent_id.is_not(None))
                )
            } - ancestors
        if ancestors:
            s.execute(
                update(J)
                .where(J.c.id.in_(ancestors), J.c.status.in_(S.FINAL))
                .values(status=S.WAITING, phase=S.PHASE_EPILOG, ended=None, attempts=0)
            )
        if with_deps:
            s.execute(
                update(J)
                .where(
                    J.c.id.in_(with_deps),
                    J.c.status == S.PENDING,
                    ~_blocked_by_unfinished(J.c.id),
                )
                .values(status=S.QUEUED, queued=now)
            )
    return len(ids)


def _chunks(seq: Sequence[int], n: int) -> Iterable[list[int]]:
    seq = list(seq)
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@dataclass(frozen=True)
class TaskStats:
    """Accounting of one task type over all past and present jobs.

    ``wall_time_total`` and ``wall_time_mean`` are seconds of execution (all attempts and
    phases); the mean is over jobs that executed at least once.
    """

    task: str
    count: int
    done: int
    failed: int
    failed_quality: int
    skipped: int
    aborted: int
    active: int
    faults: int
    wall_time_total: float
    wall_time_mean: float | None


def task_stats(
    registry: Registry, *, since: datetime | None = None, until: datetime | None = None
) -> list[TaskStats]:
    """Per task type: job counts by outcome, jobs that had a fault, total and mean wall time
    (seconds) — one aggregate query over ``job`` (optionally created in [since, until))."""

    def n(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    q = select(
        J.c.task,
        func.count(),
        n(J.c.status == S.DONE),
        n(J.c.status == S.FAILED),
        n(J.c.status == S.FAILED_QUALITY),
        n(J.c.status == S.SKIPPED),
        n(J.c.status == S.ABORTED),
        n(J.c.status.in_(S.ACTIVE)),
        n(J.c.fault.is_not(None)),
        func.coalesce(func.sum(J.c.wall_time), 0.0),
        func.avg(case((J.c.wall_time > 0, J.c.wall_time), else_=None)),
    ).group_by(J.c.task)
    if since is not None:
        q = q.where(J.c.created >= since)
    if until is not None:
        q = q.where(J.c.created < until)
    with registry.session(write=False) as s:
        rows = s.execute(q.order_by(J.c.task)).all()
    return [
        TaskStats(
            task=r[0],
            count=int(r[1]),
            done=int(r[2] or 0),
            failed=int(r[3] or 0),
            failed_quality=int(r[4] or 0),
            skipped=int(r[5] or 0),
            aborted=int(r[6] or 0),
            active=int(r[7] or 0),
            faults=int(r[8] or 0),
            wall_time_total=float(r[9] or 0.0),
            wall_time_mean=None if r[10] is None else float(r[10]),
        )
        for r in rows
    ]


def count_active(
    session: Session, *, root_id: int | None = None, tasks: Sequence[str] | None = None
) -> int:
    """Number of jobs still to do or under way (in the tree of ``root_id`` when given)."""
    q = select(func.count()).where(J.c.status.in_(S.ACTIVE), _tree_filter(root_id))
    if tasks is not None:
        q = q.where(J.c.task.in_(list(tasks)))
    return int(session.execute(q).scalar_one())


def next_ready_time(session: Session, *, root_id: int | None = None) -> datetime | None:
    """Earliest ``not_before`` of a queued job (for idle pilots to sleep until), or None."""
    q = select(func.min(J.c.not_before)).where(J.c.status == S.QUEUED, _tree_filter(root_id))
    return aware(session.execute(q).scalar_one())
