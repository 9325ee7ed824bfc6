"""What the executors share: their options (:class:`RunOptions`), their report
(:class:`RunReport`) and the watch over the work they run (:class:`RunMonitor`).

Local pilot processes (:func:`~surveydm.orchestration.local.run_local`) and the Dask driver
(:func:`~surveydm.orchestration.dask_executor.run_dask`) take the same :class:`RunOptions`;
each ignores the few fields that are another executor's (said in the field's comment).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from surveydm.db import Registry
from surveydm.orchestration.reads import count_active, status_counts, summarize
from surveydm.orchestration.records import Summary
from surveydm.orchestration.status import FINAL, JobStatus
from surveydm.orchestration.tasks import TASKS, task_modules
from surveydm.orchestration.txn import with_db_retry

#: What ``progress`` receives: the tree's summary, or (without a root) the counts per status.
Progress = Callable[[Summary | dict[str, int]], None]


@dataclass(frozen=True)
class RunOptions:
    """How an executor runs jobs.

    Attributes:
        processes: local pilot processes (0: one pilot in the calling process, no fork).
            Dask: unused (the cluster decides).
        max_in_flight: Dask: jobs submitted at once (default 2 per Dask thread). Local: unused.
        task_filter: task types to run (default: every registered type).
        modules: extra task modules the pilots / Dask workers import (those of every task type
            registered in this process always are).
        until_idle: stop when the work is finished (a tree: its root ended; the queue: no
            active job left); False: run until ``stop`` is set or ``timeout``.
        timeout: stop after this many seconds (the report then says ``finished=False``).
        stop: set it (from another thread or a signal handler) to stop early.
        progress: called every ``progress_interval`` seconds and at the end with the tree's
            :class:`Summary` (or, without a root, the counts per status).
        progress_interval: seconds between ``progress`` calls.
        lease_seconds: lease of every claim (default: settings ``lease_seconds``).
        poll_interval: seconds an idle pilot (or driver) sleeps before it looks again.
        max_batch: most jobs a pilot claims at once (never more than its fair share of the
            ready jobs; 1 for jobs longer than 50 ms: see :mod:`~surveydm.orchestration.worker`).
        env: local: environment variables set in each pilot process (e.g. ``SURVEYDM_*``
            settings the tasks read); with ``processes=0`` set in this process. Dask: unused.
        start_method: local: multiprocessing start method (default ``forkserver`` where
            available, else ``spawn``; never a plain fork of a possibly multi-threaded
            process). Dask: unused.
    """

    processes: int = 2
    max_in_flight: int | None = None
    task_filter: Sequence[str] | None = None
    modules: Sequence[str] = ()
    until_idle: bool = True
    timeout: float | None = None
    stop: threading.Event | None = None
    progress: Progress | None = None
    progress_interval: float = 0.5
    lease_seconds: float | None = None
    poll_interval: float = 0.2
    max_batch: int = 256
    env: Mapping[str, str] | None = None
    start_method: str | None = None

    @classmethod
    def of(cls, options: RunOptions | None = None, **changes: Any) -> RunOptions:
        """``options`` (default: the defaults) with ``changes`` applied.

        Raises:
            TypeError: a change names no field.
        """
        return dataclasses.replace(options or cls(), **changes)

    @property
    def tasks(self) -> list[str]:
        """The task types to run: ``task_filter`` or every type registered in this process."""
        return sorted(self.task_filter) if self.task_filter is not None else sorted(TASKS)

    @property
    def all_modules(self) -> list[str]:
        """Task modules to import where jobs run: those of every registered type + ``modules``."""
        return sorted(set(task_modules()) | set(self.modules))

    def worker_kwargs(self, root_id: int | None) -> dict[str, Any]:
        """Keyword arguments of each :class:`~surveydm.orchestration.worker.Worker`."""
        return {
            "tasks": self.tasks,
            "root_id": root_id,
            "lease_seconds": self.lease_seconds,
            "poll_interval": self.poll_interval,
            "max_batch": self.max_batch,
            "pilots": max(1, self.processes),
        }


@dataclass
class RunReport:
    """Outcome of a :func:`~surveydm.orchestration.run_local` /
    :func:`~surveydm.orchestration.run_dask` run.

    Attributes:
        root_job_id: the tree that was run, or None for the whole queue.
        summary: final :class:`Summary` of that tree (None without a root).
        counts: jobs per status at the end (the tree's sub-jobs, or the whole queue).
        elapsed: seconds from start to finish.
        restarts: pilot processes restarted after they died.
        finished: True when the work was finished (False: stopped early).
    """

    root_job_id: int | None
    summary: Summary | None
    counts: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    restarts: int = 0
    finished: bool = False

    @property
    def ok(self) -> bool:
        """Finished with nothing failed, skipped, aborted or partial (the root itself done)."""
        bad = sum(self.counts.get(s, 0) for s in FINAL - {JobStatus.DONE})
        root_ok = self.summary is None or self.summary.status == JobStatus.DONE
        return self.finished and bad == 0 and root_ok


class RunMonitor:
    """Watches the work an executor runs: is it finished, progress calls, the final report.

    Args:
        registry: a registry of the executor's process (reads only).
        root_id: the tree run, or None for the whole queue (of ``options.tasks``).
        options: the run's options (``progress``, ``progress_interval``, ``until_idle``,
            ``timeout``, ``stop``).
    """

    def __init__(self, registry: Registry, root_id: int | None, options: RunOptions) -> None:
        self.registry = registry
        self.root_id = root_id
        self.options = options
        self.tasks = options.tasks
        self.stop = options.stop or threading.Event()
        self.report = RunReport(root_job_id=root_id, summary=None)
        self._t0 = time.perf_counter()
        self._deadline = None if options.timeout is None else time.monotonic() + options.timeout
        self._last_progress = 0.0

    def _read(self, fn: Callable[[Any], Any], what: str) -> Any:
        def do() -> Any:
            with self.registry.session(write=False) as s:
                return fn(s)

        return with_db_retry(do, what=what)

    def check_root(self) -> None:
        """Raise :class:`~surveydm.orchestration.records.JobNotFoundError` early for a
        missing root."""
        if self.root_id is not None:
            self._read(lambda s: summarize(s, self.root_id), "reading the root job")

    def finished(self) -> bool:
        """True when the work is finished (records it in the report)."""
        if self.root_id is not None:
            self.report.summary = self._read(lambda s: summarize(s, self.root_id), "progress")
            done = self.report.summary.status in FINAL
        else:
            done = self._read(lambda s: count_active(s, tasks=self.tasks), "progress") == 0
        self.report.finished = self.report.finished or done
        return done

    def should_stop(self) -> bool:
        """True once the work is finished (with ``until_idle``), ``stop`` is set or the
        timeout passed."""
        if self.options.until_idle and self.finished():
            return True
        return self.stop.is_set() or (
            self._deadline is not None and time.monotonic() > self._deadline
        )

    def emit(self) -> None:
        """Call ``progress`` with the tree's summary (or the counts per status)."""
        progress = self.options.progress
        if progress is None:
            return
        if self.root_id is not None:
            progress(self._read(lambda s: summarize(s, self.root_id), "reporting progress"))
        else:
            progress(self._read(lambda s: status_counts(s, tasks=self.tasks), "counting jobs"))

    def tick(self) -> None:
        """:meth:`emit` if ``progress_interval`` passed since the last call."""
        if time.monotonic() - self._last_progress > self.options.progress_interval:
            self._last_progress = time.monotonic()
            self.emit()

    def final_report(self) -> RunReport:
        """The report: a last progress call, the final summary and counts, the elapsed time."""
        self.emit()
        rep = self.report
        if self.root_id is not None:
            rep.summary = self._read(lambda s: summarize(s, self.root_id), "summarising")
        tasks = None if self.root_id is not None else self.tasks
        rep.counts = self._read(
            lambda s: status_counts(s, root_id=self.root_id, tasks=tasks), "counting jobs"
        )
        rep.elapsed = time.perf_counter() - self._t0
        return rep
