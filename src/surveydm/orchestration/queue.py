"""The queue: creating jobs, claiming ready ones, keeping their leases.

Every function takes an open :class:`~sqlalchemy.orm.Session` (a short transaction the caller
commits). A claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING`` on PostgreSQL (the caller's ``BEGIN IMMEDIATE`` transaction on SQLite); sub-jobs
and their dependencies are bulk-inserted (``INSERT ... RETURNING``, or ``COPY`` on PostgreSQL
for large graphs).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    Text,
    and_,
    bindparam,
    cast,
    distinct,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from surveydm.db.base import utcnow
from surveydm.db.models.jobs import Dependency, Job
from surveydm.orchestration.records import Claim, DuplicateJobError, SubJobSpec
from surveydm.orchestration.status import JobStatus, Phase
from surveydm.orchestration.tasks import get_task
from surveydm.orchestration.wakeup import announce_ready

J = Job.__table__
D = Dependency.__table__

#: Lost workers a job survives by default before it fails (see ``Task.max_lost``).
DEFAULT_MAX_LOST = 5
#: From this many sub-jobs on, PostgreSQL inserts them with COPY (ids drawn from the sequence).
COPY_THRESHOLD = 2000


def find_by_key(session: Session, task: str, key: str) -> int | None:
    """Id of the job of type ``task`` with ``key``, or None."""
    return session.execute(
        select(J.c.id).where(J.c.task == task, J.c.key == key)
    ).scalar_one_or_none()


def submit(
    session: Session,
    task: str,
    *,
    key: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    input: dict[str, Any] | None = None,  # noqa: A002
    production_id: int | None = None,
    max_attempts: int | None = None,
    max_lost: int | None = None,
    check_task: bool = True,
) -> int:
    """Create a top-level job of task type ``task``, ready to be claimed; returns its id.

    ``key`` identifies the job's work (its data ID, see
    :func:`~surveydm.orchestration.records.job_key`): at most one job per task type and key.
    ``check_task`` verifies that ``task`` is registered in this process (load its module
    first); pass False to queue work for workers that know task types this process does not.

    Raises:
        DuplicateJobError: a job with this task type and ``key`` exists (its id is
            ``exc.job_id``). A concurrent submission of the same key may instead surface as
            the unique index's ``IntegrityError`` at commit; :meth:`JobManager.submit
            <surveydm.orchestration.manager.JobManager.submit>` turns both into this error.
        UnknownTaskError: ``check_task`` and ``task`` is not registered.
        ValueError: ``config`` or ``input`` is not a dict, or ``key`` is empty.
    """
    attempts, lost = max_attempts, max_lost
    if check_task:
        cls = get_task(task)
        attempts = attempts or cls.max_attempts
        lost = lost or cls.max_lost
    for label, value in (("config", config), ("input", input)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{label} must be a JSON object (dict), got {type(value).__name__}")
    if key is not None:
        if not key:
            raise ValueError("key must not be empty (pass None for no key)")
        existing = find_by_key(session, task, key)
        if existing is not None:
            raise DuplicateJobError(task, key, existing)
    now = utcnow()
    job_id = session.execute(
        insert(J)
        .values(
            task=task,
            key=key,
            name=name or task,
            config=dict(config or {}),
            input=dict(input or {}),
            status=JobStatus.QUEUED,
            phase=Phase.PROLOG,
            production_id=production_id,
            created=now,
            queued=now,
            not_before=now,
            attempts=0,
            max_attempts=int(attempts or 3),
            lost=0,
            max_lost=int(lost or DEFAULT_MAX_LOST),
            valid=True,
            wall_time=0.0,
        )
        .returning(J.c.id)
    ).scalar_one()
    session.execute(update(J).where(J.c.id == job_id).values(root_id=job_id))
    announce_ready(session)
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
    the order of ``specs``. Sub-jobs without dependencies are ``queued``, others ``pending``.
    A sub-job whose key is taken raises the unique index's ``IntegrityError`` (a fault of the
    step that created it)."""
    if not specs:
        return []
    rows = [
        {
            "task": sp.task,
            "key": sp.key,
            "name": sp.name,
            "config": sp.config,
            "input": sp.input,
            "status": JobStatus.PENDING if sp.after else JobStatus.QUEUED,
            "phase": Phase.PROLOG,
            "parent_id": parent_id,
            "root_id": root_id,
            "production_id": production_id,
            "created": now,
            "queued": None if sp.after else now,
            "not_before": now,
            "attempts": 0,
            "max_attempts": sp.max_attempts,
            "lost": 0,
            "max_lost": sp.max_lost,
            "valid": True,
            "wall_time": 0.0,
        }
        for sp in specs
    ]
    if any(not sp.after for sp in specs):
        announce_ready(session)
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


def _copy_subjobs(
    session: Session, rows: list[dict[str, Any]], specs: Sequence[SubJobSpec], parent_id: int
) -> list[int]:
    """PostgreSQL bulk path: draw ids from ``job``'s sequence, then ``COPY`` the jobs and their
    dependencies (several times faster than multi-row INSERT for 10^5 rows)."""
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


#: The JSON columns come back as text, decoded by :meth:`Claim.from_row` (most are ``{}``,
#: which skips the decoder: the driver's JSON loading was ~0.1 ms per claimed job).
_CLAIM_RETURNING = (
    J.c.id,
    J.c.task,
    J.c.name,
    cast(J.c.config, Text).label("config"),
    cast(J.c.input, Text).label("input"),
    cast(J.c.output, Text).label("output"),
    J.c.production_id,
    J.c.phase,
    J.c.attempts,
    J.c.max_attempts,
    J.c.lost,
    J.c.parent_id,
    J.c.root_id,
)


_CLAIM_CACHE: dict[tuple[bool, bool], Any] = {}


def _claim_statement(by_task: bool, by_root: bool) -> Any:
    """The claim ``UPDATE``, built once per shape with bound parameters (hot path: building
    and keying a statement costs more than executing it on SQLite)."""
    stmt = _CLAIM_CACHE.get((by_task, by_root))
    if stmt is not None:
        return stmt
    conds = [J.c.status == JobStatus.QUEUED, J.c.not_before <= bindparam("c_now")]
    if by_task:
        conds.append(J.c.task.in_(bindparam("c_tasks", expanding=True)))
    if by_root:
        conds.append(J.c.root_id == bindparam("c_root_id"))
    pick = (
        select(J.c.id)
        .where(and_(*conds))
        .order_by(J.c.id)
        .limit(bindparam("c_limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    stmt = _CLAIM_CACHE[(by_task, by_root)] = (
        update(J)
        .where(J.c.id.in_(pick.scalar_subquery()))
        .values(
            status=JobStatus.RUNNING,
            attempts=J.c.attempts + 1,
            worker=bindparam("c_worker"),
            host=bindparam("c_host"),
            pid=bindparam("c_pid"),
            token=bindparam("c_token"),
            claimed=bindparam("c_now"),
            lease_expires=bindparam("c_lease_expires"),
        )
        .returning(*_CLAIM_RETURNING)
    )
    return stmt


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
    job gets status ``running``, one more attempt, the worker identity, the claim time, a fresh
    claim token and a lease of ``lease_seconds``.
    """
    now = now or utcnow()
    token = uuid.uuid4().hex
    params: dict[str, Any] = {
        "c_now": now,
        "c_limit": int(limit),
        "c_worker": worker[:128],
        "c_host": host[:128],
        "c_pid": pid,
        "c_token": token,
        "c_lease_expires": now + timedelta(seconds=lease_seconds),
    }
    if tasks is not None:
        params["c_tasks"] = list(tasks)
    if root_id is not None:
        params["c_root_id"] = root_id
    stmt = _claim_statement(tasks is not None, root_id is not None)
    out = [
        Claim.from_row(r, token=token, worker=worker, host=host, pid=pid, claimed=now)
        for r in session.execute(stmt, params)
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
        .where(J.c.token.in_(tokens), J.c.status == JobStatus.RUNNING)
        .values(lease_expires=now + timedelta(seconds=lease_seconds))
        .returning(J.c.id)
    )
    return {int(r[0]) for r in rows}


def release(session: Session, claims: Sequence[Claim]) -> int:
    """Give back claimed jobs that were never started (a pilot stopping with a batch it
    claimed ahead): queued again, the attempt not counted, no ``job_attempt`` row (the claim
    ran nothing). Compare-and-set on the claim token; returns the number released."""
    if not claims:
        return 0
    res = session.execute(
        update(J)
        .where(
            J.c.id.in_([c.id for c in claims]),
            J.c.token == claims[0].token,
            J.c.status == JobStatus.RUNNING,
        )
        .values(
            status=JobStatus.QUEUED,
            attempts=J.c.attempts - 1,
            token=None,
            lease_expires=None,
            claimed=None,
        )
    )
    if res.rowcount:
        announce_ready(session)
    return res.rowcount or 0


@dataclass(frozen=True)
class QueueOutlook:
    """What a pilot sizes its claims by: ``ready`` jobs (counted up to a cap) and the
    ``pilots`` holding running jobs (distinct claims under way, the asking pilot excluded)."""

    ready: int
    pilots: int


def _outlook_statement(by_root: bool) -> Any:
    stmt = _OUTLOOK_CACHE.get(by_root)
    if stmt is not None:
        return stmt
    ready_where = [J.c.status == JobStatus.QUEUED]
    running_where = [J.c.status == JobStatus.RUNNING]
    if by_root:
        ready_where.append(J.c.root_id == bindparam("o_root_id"))
        running_where.append(J.c.root_id == bindparam("o_root_id"))
    ready = select(J.c.id).where(*ready_where).limit(bindparam("o_cap", type_=Integer))
    ready_q = select(func.count()).select_from(ready.subquery()).scalar_subquery()
    pilots_q = select(func.count(distinct(J.c.token))).where(*running_where).scalar_subquery()
    stmt = _OUTLOOK_CACHE[by_root] = select(ready_q.label("ready"), pilots_q.label("pilots"))
    return stmt


_OUTLOOK_CACHE: dict[bool, Any] = {}


def queue_outlook(session: Session, *, cap: int, root_id: int | None = None) -> QueueOutlook:
    """Ready jobs (``queued``, up to ``cap``: an index range scan of the claim index) and
    pilots with running jobs (``job.token`` is one per claimed batch), of the tree of
    ``root_id`` when given."""
    params: dict[str, Any] = {"o_cap": int(cap)}
    if root_id is not None:
        params["o_root_id"] = root_id
    r = session.execute(_outlook_statement(root_id is not None), params).one()
    return QueueOutlook(int(r.ready), int(r.pilots))
