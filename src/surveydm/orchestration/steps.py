"""Executing one claimed step of a job and recording its outcome.

:func:`run_step` runs the task's prolog/run/epilog (a failure is recorded at once);
:func:`record_success` records a success in its own transaction, :func:`record_successes`
several at once (group commit); :func:`execute_claim` does both for one claim (what a Dask task
or a pilot runs). Each records the step's sub-jobs, tags, QC rows, attempt row and ``on_commit``
work in the one transaction that ends it (:mod:`~surveydm.orchestration.transitions`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from surveydm.db import Registry
from surveydm.db.base import utcnow
from surveydm.orchestration.records import Claim, LeaseLostError
from surveydm.orchestration.status import JobStatus, Phase
from surveydm.orchestration.tasks import (
    CancelFlag,
    JobContext,
    QualityFailure,
    UnknownTaskError,
    get_task,
)
from surveydm.orchestration.transitions import (
    SETTLE_KEY,
    complete_done_group,
    complete_step,
    fail_step,
    record_results,
    settle,
)
from surveydm.orchestration.txn import job_session, with_db_retry

log = logging.getLogger("surveydm.worker")

R = TypeVar("R")

#: Outcome of executing a claim when the claim was lost meanwhile (aborted / lease taken).
LOST = "lost"


def _jsonable_output(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        value = {"result": value}
    json.dumps(value)  # raises TypeError for values JSON cannot hold: a fault of the task
    return value


def _take_settle(session: Session, todo: list[Any]) -> None:
    """Move what :func:`note_settle` noted in this transaction into ``todo``."""
    todo.clear()
    noted = session.info.pop(SETTLE_KEY, None)
    if noted:
        todo.append(noted)


def _settle(registry: Registry, todo: list[Any], durable: bool) -> None:
    """After commit: re-check the wake-ups / promotions a concurrent commit may have hidden."""
    if not todo:
        return
    ids, pids = todo[0]

    def do() -> None:
        with job_session(registry, durable=durable) as s:
            settle(s, sorted(ids), sorted(pids))

    try:
        with_db_retry(do, what="settling")
    except Exception as exc:  # noqa: BLE001  (the next full sweep repairs it)
        log.warning("post-commit settle failed: %s", exc)


@dataclass
class StepResult:
    """A step that ran without error, not yet recorded (internal: see :func:`run_step`)."""

    claim: Claim
    ctx: JobContext
    output: dict[str, Any] | None
    tags: list[tuple[str, str]]
    started: datetime
    t0: float
    wall: float

    @property
    def backoff(self) -> float:
        """Seconds before a retry, should recording the step fail (an ``on_commit`` error)."""
        try:
            return get_task(self.claim.task).backoff_seconds(self.claim.attempts)
        except UnknownTaskError:
            return 5.0


def run_step(
    registry: Registry,
    claim: Claim,
    *,
    cancel: CancelFlag | threading.Event | None = None,
    durable: bool = False,
) -> StepResult | str:
    """Execute the claimed step of one job. A failure (fault or quality) is recorded at once
    and its new status returned; a success is returned as a :class:`StepResult` for
    :func:`record_success` or :func:`record_successes` to record.

    The prolog phase runs ``prolog`` then ``run`` and, when no sub-job was created, ``epilog``;
    the epilog phase (after the sub-jobs ended) runs ``epilog`` only.
    """
    started = utcnow()
    t0 = time.perf_counter()
    ctx = JobContext(
        job_id=claim.id,
        task=claim.task,
        name=claim.name,
        config=claim.config,
        input=claim.input,
        production_id=claim.production_id,
        registry=registry,
        phase=claim.phase,
        attempt=claim.attempts,
        output=claim.output,
        worker=claim.worker,
        _cancel=cancel if cancel is not None else CancelFlag(),
    )
    cls = None
    try:
        cls = get_task(claim.task)
        task = cls()
        if claim.phase == Phase.EPILOG:
            task.epilog(ctx)
        else:
            task.prolog(ctx)
            result = task.run(ctx)
            if result is not None:
                ctx.output = result
            if not ctx._subjobs:
                task.epilog(ctx)
        output = _jsonable_output(ctx.output)
    except QualityFailure as exc:
        return _record_failure(
            registry,
            claim,
            ctx,
            started,
            t0,
            quality=str(exc) or "quality failure",
            durable=durable,
        )
    except Exception as exc:  # noqa: BLE001  (any error of a task is a fault)
        backoff = cls.backoff_seconds(claim.attempts) if cls is not None else 0.0
        return _record_failure(
            registry, claim, ctx, started, t0, fault=exc, backoff=backoff, durable=durable
        )
    tags = list(ctx._tags)
    if ctx._log:
        tags.append(("log", "\n".join(ctx._log)))
    return StepResult(
        claim=claim,
        ctx=ctx,
        output=output,
        tags=tags,
        started=started,
        t0=t0,
        wall=time.perf_counter() - t0,
    )


def record_success(registry: Registry, res: StepResult, *, durable: bool = False) -> str:
    """Record one successful step in its own transaction (with its ``on_commit`` work); an
    ``on_commit`` or constraint error becomes a fault. Returns the new status or ``"lost"``."""
    claim, ctx = res.claim, res.ctx

    def complete() -> str:
        with job_session(registry, durable=durable) as s:
            new = complete_step(
                s,
                claim,
                output=res.output,
                subjobs=ctx._subjobs,
                tags=res.tags,
                qc=ctx._qc,
                started=res.started,
                wall=res.wall,
            )
            for fn in ctx._on_commit:
                fn(s)
            s.flush()
            _take_settle(s, todo)
            return new

    todo: list[Any] = []
    try:
        new = with_db_retry(complete, what=f"ending job {claim.id}")
        _settle(registry, todo, durable)
        return new
    except LeaseLostError:
        log.warning("job %s: claim lost (aborted or lease expired); result discarded", claim.id)
        return LOST
    except Exception as exc:  # noqa: BLE001  (on_commit or a constraint failed: a fault)
        return _record_failure(
            registry,
            claim,
            ctx,
            res.started,
            res.t0,
            fault=exc,
            backoff=res.backoff,
            durable=durable,
        )


def record_successes(
    registry: Registry, results: list[StepResult], *, durable: bool = False
) -> list[str]:
    """Record several successful steps that created no sub-jobs in ONE transaction (group
    commit: one compare-and-set over the group, set-based promotion of dependants, every job's
    ``on_commit`` work). Each job still ends atomically with its products; if anything in the
    group fails (a lost claim, an ``on_commit`` error), the group is rolled back and every job
    is recorded on its own by :func:`record_success`. Returns the new statuses."""
    return record_successes_then(registry, results, durable=durable)[0]


def record_successes_then(
    registry: Registry,
    results: list[StepResult],
    *,
    durable: bool = False,
    then: Callable[[Session], R] | None = None,
) -> tuple[list[str], R | None]:
    """:func:`record_successes`, and ``then(session)`` run last in the group's transaction (a
    pilot claims its next batch there: one transaction per batch). Returns the new statuses
    and what ``then`` returned, None when the group was recorded one by one (``then`` was
    not committed)."""
    if len(results) <= 1 or any(not groupable(r) for r in results):
        return [record_success(registry, r, durable=durable) for r in results], None

    todo: list[Any] = []

    def complete() -> R | None:
        with job_session(registry, durable=durable) as s:
            complete_done_group(s, [(r.claim, r.output, r.started, r.wall) for r in results])
            now = None
            for r in results:
                if r.tags or r.ctx._qc:
                    now = now or utcnow()
                    record_results(s, r.claim.id, r.claim.attempts, r.tags, r.ctx._qc, now)
                for fn in r.ctx._on_commit:
                    fn(s)
            if any(r.ctx._on_commit for r in results):
                s.flush()
            _take_settle(s, todo)
            return then(s) if then is not None else None

    try:
        after = with_db_retry(complete, what=f"ending {len(results)} jobs")
        _settle(registry, todo, durable)
    except Exception as exc:  # noqa: BLE001  (record them one by one, isolating the culprit)
        log.info("group commit of %d jobs failed (%s); recording one by one", len(results), exc)
        return [record_success(registry, r, durable=durable) for r in results], None
    return [JobStatus.DONE] * len(results), after


def groupable(res: StepResult) -> bool:
    """True when the step may be group-committed: it created no sub-jobs and is not an epilog
    (an epilog may end ``done_partial``, which the group's single statement does not judge)."""
    return not res.ctx._subjobs and res.claim.phase == Phase.PROLOG


def execute_claim(
    registry: Registry,
    claim: Claim,
    *,
    cancel: threading.Event | None = None,
    durable: bool = False,
) -> str:
    """Execute the claimed step of one job and record its outcome; returns the job's new
    status (``done``, ``waiting``, ``queued`` after a fault, ``failed``, ``failed_quality``) or
    ``"lost"`` when the claim was no longer held at the end (nothing was recorded).
    ``durable``: see :func:`job_session`.
    """
    res = run_step(registry, claim, cancel=cancel, durable=durable)
    if isinstance(res, str):
        return res
    return record_success(registry, res, durable=durable)


def _record_failure(
    registry: Registry,
    claim: Claim,
    ctx: JobContext,
    started: Any,
    t0: float,
    *,
    quality: str | None = None,
    fault: BaseException | None = None,
    backoff: float = 0.0,
    durable: bool = False,
) -> str:
    tags = list(ctx._tags)
    if ctx._log:
        tags.append(("log", "\n".join(ctx._log)))
    fault_text = None
    if fault is not None:
        tb = "".join(traceback.format_exception(fault))
        tags.append(("traceback", tb))
        fault_text = f"{type(fault).__name__}: {fault}"
        if isinstance(fault, UnknownTaskError):
            backoff = 5.0
        log.warning("job %s (%s) attempt %s: %s", claim.id, claim.task, claim.attempts, fault_text)

    todo: list[Any] = []

    def fail() -> str:
        with job_session(registry, durable=durable) as s:
            new = fail_step(
                s,
                claim,
                quality=quality,
                fault=fault_text,
                backoff=backoff,
                tags=tags,
                # QC rows explain a quality failure; a faulted attempt's are re-measured.
                qc=ctx._qc if quality is not None else (),
                started=started,
                wall=time.perf_counter() - t0,
            )
            _take_settle(s, todo)
            return new

    try:
        new = with_db_retry(fail, what=f"failing job {claim.id}")
        _settle(registry, todo, durable)
        return new
    except LeaseLostError:
        return LOST
