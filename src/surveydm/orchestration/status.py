"""Job status values and their transitions.

::

    pending --(all dependencies done)--> queued --(claimed)--> running
    pending --(a dependency not done)--> skipped
    running --(no sub-jobs left to wait for)--> done
    running --(prolog/epilog added sub-jobs)--> waiting --(all sub-jobs ended)--> queued (epilog)
    running --(fault, attempts left)--> queued (not_before = back-off)
    running --(fault, no attempts left)--> failed
    running --(QualityFailure)--> failed_quality
    running --(lease expired: worker lost)--> queued / failed
    any non-final --(abort)--> aborted
    failed / failed_quality / aborted / skipped --(retry)--> queued / pending
"""

from __future__ import annotations

PENDING = "pending"
QUEUED = "queued"
RUNNING = "running"
WAITING = "waiting"
DONE = "done"
FAILED = "failed"
FAILED_QUALITY = "failed_quality"
SKIPPED = "skipped"
ABORTED = "aborted"

#: Every status, in the order a job usually goes through them (used for display).
ALL: tuple[str, ...] = (
    PENDING,
    QUEUED,
    RUNNING,
    WAITING,
    DONE,
    FAILED,
    FAILED_QUALITY,
    SKIPPED,
    ABORTED,
)
#: A job in one of these will not change again unless an operator retries it.
FINAL: tuple[str, ...] = (DONE, FAILED, FAILED_QUALITY, SKIPPED, ABORTED)
#: Still to do or under way.
ACTIVE: tuple[str, ...] = (PENDING, QUEUED, RUNNING, WAITING)
#: Final statuses an operator may retry.
RETRYABLE: tuple[str, ...] = (FAILED, FAILED_QUALITY, SKIPPED, ABORTED)

#: Phases: what a claim of the job executes.
PHASE_PROLOG = "prolog"  # prolog, run, then (if no sub-jobs were added) epilog
PHASE_EPILOG = "epilog"  # epilog only, after the sub-jobs ended
