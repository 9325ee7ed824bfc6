"""The face of the job system for operators and pipelines: :class:`JobManager` (create, follow,
abort, retry and account for jobs through a :class:`~surveydm.db.Registry`, as procrastinate's
``JobManager``), and the same operations as functions taking the registry first.

Below this face every operation takes an open :class:`~sqlalchemy.orm.Session`:
:mod:`~surveydm.orchestration.queue` (submit, claim, lease),
:mod:`~surveydm.orchestration.transitions` (complete, fail, lose, propagate),
:mod:`~surveydm.orchestration.sweep`, :mod:`~surveydm.orchestration.admin` (abort, retry) and
:mod:`~surveydm.orchestration.reads` (detail, summaries, listings, accounting).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

import surveydm.orchestration.admin as admin
import surveydm.orchestration.queue as queue
import surveydm.orchestration.reads as reads
from surveydm.db import Registry
from surveydm.orchestration.records import (
    DuplicateJobError,
    JobDetail,
    JobQuery,
    JobRecord,
    Summary,
    TaskStats,
)


class JobManager:
    """Jobs of one registry: every method is one short transaction.

    Args:
        registry: the registry holding the jobs.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def submit(
        self,
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
        """Create a top-level job ready to be claimed; returns its id
        (:func:`surveydm.orchestration.queue.submit`).

        Raises:
            DuplicateJobError: a job of this task type with ``key`` exists (``exc.job_id``),
                also when another process submitted it at the same instant.
            UnknownTaskError: ``check_task`` and ``task`` is not registered.
            ValueError: ``config`` or ``input`` is not a dict, or ``key`` is empty.
        """
        try:
            with self.registry.session() as s:
                return queue.submit(
                    s,
                    task,
                    key=key,
                    name=name,
                    config=config,
                    input=input,
                    production_id=production_id,
                    max_attempts=max_attempts,
                    max_lost=max_lost,
                    check_task=check_task,
                )
        except IntegrityError:
            if key is None:
                raise
            with self.registry.session(write=False) as s:
                existing = queue.find_by_key(s, task, key)
            if existing is None:
                raise
            raise DuplicateJobError(task, key, existing) from None

    def find(self, task: str, key: str) -> int | None:
        """Id of the job of type ``task`` with ``key``, or None."""
        with self.registry.session(write=False) as s:
            return queue.find_by_key(s, task, key)

    def summary(self, job_id: int) -> Summary:
        """Derived status of ``job_id``'s tree (:func:`surveydm.orchestration.reads.summarize`).

        Raises:
            JobNotFoundError: no such job.
        """
        with self.registry.session(write=False) as s:
            return reads.summarize(s, job_id)

    def detail(self, job_id: int, *, children: int = 200, failed: int = 50) -> JobDetail:
        """Everything about one job (:func:`surveydm.orchestration.reads.job_detail`).

        Raises:
            JobNotFoundError: no such job.
        """
        with self.registry.session(write=False) as s:
            return reads.job_detail(s, job_id, children=children, failed=failed)

    def list(self, query: JobQuery, *, limit: int = 50, offset: int = 0) -> list[JobRecord]:
        """Jobs matching ``query``, newest first."""
        with self.registry.session(write=False) as s:
            return reads.list_jobs(s, query, limit=limit, offset=offset)

    def abort(self, job_id: int, *, reason: str = "aborted by operator") -> int:
        """Abort the job and its tree (:func:`surveydm.orchestration.admin.abort`).

        Raises:
            JobNotFoundError: no such job.
            JobStateError: the job and its whole tree already ended.
        """
        with self.registry.session() as s:
            return admin.abort(s, job_id, reason=reason)

    def retry(self, job_id: int) -> int:
        """Re-queue the failed jobs of the tree (:func:`surveydm.orchestration.admin.retry`).

        Raises:
            JobNotFoundError: no such job.
            JobStateError: nothing in the tree can be retried.
        """
        with self.registry.session() as s:
            return admin.retry(s, job_id)

    def stats(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[TaskStats]:
        """Accounting per task type (:func:`surveydm.orchestration.reads.task_stats`)."""
        with self.registry.session(write=False) as s:
            return reads.task_stats(s, since=since, until=until)


def submit(registry: Registry, task: str, **options: Any) -> int:
    """:meth:`JobManager.submit` on ``registry`` (same keyword arguments)."""
    return JobManager(registry).submit(task, **options)


def status_summary(registry: Registry, job_id: int) -> Summary:
    """:meth:`JobManager.summary` on ``registry``."""
    return JobManager(registry).summary(job_id)


def abort(registry: Registry, job_id: int, *, reason: str = "aborted by operator") -> int:
    """:meth:`JobManager.abort` on ``registry``."""
    return JobManager(registry).abort(job_id, reason=reason)


def retry(registry: Registry, job_id: int) -> int:
    """:meth:`JobManager.retry` on ``registry``."""
    return JobManager(registry).retry(job_id)


def task_stats(
    registry: Registry, *, since: datetime | None = None, until: datetime | None = None
) -> list[TaskStats]:
    """:meth:`JobManager.stats` on ``registry``."""
    return JobManager(registry).stats(since=since, until=until)
