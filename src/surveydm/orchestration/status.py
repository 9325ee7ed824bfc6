"""Job statuses, phases and attempt outcomes: the job system's vocabulary.

::

    pending --(all dependencies done)--> queued --(claimed)--> running
    pending --(a dependency not done)--> skipped
    running --(no sub-jobs left to wait for)--> done
    running --(epilog ended, some sub-job not done)--> done_partial
    running --(prolog/epilog added sub-jobs)--> waiting --(all sub-jobs ended)--> queued (epilog)
    running --(fault, attempts left)--> queued (not_before = back-off)
    running --(fault, no attempts left)--> failed
    running --(QualityFailure)--> failed_quality
    running --(lease expired: worker lost, lost budget left)--> queued
    running --(lease expired max_lost times)--> failed
    any non-final --(abort)--> aborted
    failed / failed_quality / aborted / skipped --(retry)--> queued / pending

The values are :class:`~enum.StrEnum` members, so they compare equal to the plain strings stored
in the ``job.status`` column (``JobStatus.DONE == "done"``).
"""

from __future__ import annotations

from enum import StrEnum

from surveydm.orchestration.qc import QCResult


class JobStatus(StrEnum):
    """Where a job is in its life (``job.status``)."""

    PENDING = "pending"  # waits for its dependencies
    QUEUED = "queued"  # ready to be claimed (from ``not_before`` on)
    RUNNING = "running"  # claimed by a worker, under a lease
    WAITING = "waiting"  # its sub-jobs are under way; its epilog runs once they all ended
    DONE = "done"  # ended well, and so did every sub-job
    DONE_PARTIAL = "done_partial"  # its own steps ended well, but some sub-job did not
    FAILED = "failed"  # a fault, retried until the budget was spent
    FAILED_QUALITY = "failed_quality"  # the data is bad (QualityFailure): never retried
    SKIPPED = "skipped"  # a dependency did not end done
    ABORTED = "aborted"  # stopped by an operator

    @property
    def result(self) -> QCResult:
        """What this status says about the data, in the QC vocabulary (from which the job-tree
        colour is derived): ``fail`` for ``failed``/``failed_quality`` (something is missing or
        bad), ``warn`` for ``done_partial``/``skipped``/``aborted``, else ``pass``."""
        return _RESULT.get(self, QCResult.PASS)


class Phase(StrEnum):
    """What a claim of the job executes (``job.phase``)."""

    PROLOG = "prolog"  # prolog, run, then (if no sub-jobs were added) epilog
    EPILOG = "epilog"  # epilog only, after the sub-jobs ended


class AttemptOutcome(StrEnum):
    """How one claim of a job ended (``job_attempt.outcome``)."""

    OK = "ok"  # the step succeeded (the job is done, done_partial or waiting)
    FAULT = "fault"  # an exception in the task or its on_commit work (retried)
    QUALITY = "quality"  # QualityFailure: the data is bad
    LOST = "lost"  # the worker was lost (lease expired, Dask worker died): the system's fault
    ABORTED = "aborted"  # an operator aborted the job while it ran
    MIGRATED = "migrated"  # summary of the attempts made before attempts were recorded


#: Every status, in the order a job usually goes through them (used for display).
ALL: tuple[JobStatus, ...] = tuple(JobStatus)
#: A job in one of these will not change again unless an operator retries it.
FINAL: frozenset[JobStatus] = frozenset(
    {
        JobStatus.DONE,
        JobStatus.DONE_PARTIAL,
        JobStatus.FAILED,
        JobStatus.FAILED_QUALITY,
        JobStatus.SKIPPED,
        JobStatus.ABORTED,
    }
)
#: Still to do or under way.
ACTIVE: frozenset[JobStatus] = frozenset(JobStatus) - FINAL
#: Final statuses that let dependants run (``done_partial``: whatever its sub-jobs made is used).
SATISFIED: frozenset[JobStatus] = frozenset({JobStatus.DONE, JobStatus.DONE_PARTIAL})
#: Final statuses an operator may retry (a ``done_partial`` job is retried through its tree).
RETRYABLE: frozenset[JobStatus] = FINAL - SATISFIED
#: Final statuses that block dependants (they are skipped).
BLOCKING: frozenset[JobStatus] = FINAL - SATISFIED

_RESULT = {
    JobStatus.FAILED: QCResult.FAIL,
    JobStatus.FAILED_QUALITY: QCResult.FAIL,
    JobStatus.DONE_PARTIAL: QCResult.WARN,
    JobStatus.SKIPPED: QCResult.WARN,
    JobStatus.ABORTED: QCResult.WARN,
}


def statuses_with(result: QCResult) -> list[JobStatus]:
    """The statuses whose :attr:`JobStatus.result` is ``result`` (for SQL filters)."""
    return [s for s in JobStatus if s.result == result]
