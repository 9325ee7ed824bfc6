"""Run jobs with local pilot processes until a job tree (or the whole queue) is finished.

:func:`run_local` starts ``processes`` pilot processes (through a fork server; each imports the
task modules and opens its own registry, so no connection or lock is shared), watches the progress
by aggregate query, calls ``progress(summary)`` for live displays (``surveydm night``), restarts
pilots that died (their jobs come back when the lease expires) and stops them when the work is
finished.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.orchestration import status as S
from surveydm.orchestration import store
from surveydm.orchestration.store import Summary
from surveydm.orchestration.tasks import TASKS, load_task_modules, task_modules
from surveydm.orchestration.worker import Worker, with_db_retry

log = logging.getLogger("surveydm.worker")

#: A pilot that exits with an error within this many seconds of its start failed to start.
PILOT_START_SECONDS = 10.0
#: Failed starts in a row, per pilot process, after which :func:`run_local` gives up.
MAX_FAILED_STARTS = 3


@dataclass
class RunReport:
    """Outcome of a :func:`run_local` / :func:`~surveydm.orchestration.run_dask` run.

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
        """Finished with nothing failed, skipped or aborted (the root itself done)."""
        bad = sum(self.counts.get(s, 0) for s in S.FINAL if s != S.DONE)
        root_ok = self.summary is None or self.summary.status == S.DONE
        return self.finished and bad == 0 and root_ok


def _pilot_main(
    url: str, modules: Sequence[str], worker_kwargs: dict[str, Any], env: dict[str, str]
) -> None:
    """Entry point of a pilot process: its own registry (small pool), its own heartbeat.

    ``env`` is applied to the process environment first: pilots fork from a long-lived fork
    server whose environment is that of the first run, not the caller's current one.

    It stops after its current batch on SIGTERM. (No multiprocessing Event: a pilot killed
    while holding the event's internal lock would block every other pilot.)
    """
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    os.environ.update(env)
    load_task_modules(modules)
    worker = Worker(url, **worker_kwargs)
    try:
        worker.run(stop=stop)
    finally:
        worker.close()


def _counts(registry: Registry, root_id: int | None, tasks: Sequence[str] | None) -> dict[str, int]:
    from sqlalchemy import func, select

    J = store.J
    q = select(J.c.status, func.count()).group_by(J.c.status)
    if root_id is not None:
        q = q.where(J.c.root_id == root_id, J.c.id != root_id)
    if tasks is not None:
        q = q.where(J.c.task.in_(list(tasks)))
    with registry.session(write=False) as s:
        got = dict(s.execute(q).all())
    return {st: int(got.get(st, 0)) for st in S.ALL}


def run_local(
    registry_url: str,
    root_job_id: int | None = None,
    *,
    processes: int = 2,
    task_filter: Sequence[str] | None = None,
    until_idle: bool = True,
    progress: Callable[[Summary | dict[str, int]], None] | None = None,
    progress_interval: float = 0.5,
    lease_seconds: float | None = None,
    poll_interval: float = 0.2,
    modules: Sequence[str] = (),
    max_batch: int = 16,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    start_method: str | None = None,
    env: Mapping[str, str] | None = None,
) -> RunReport:
    """Run jobs with ``processes`` local pilot processes until the work is finished.

    Args:
        registry_url: database URL (each pilot opens its own registry).
        root_job_id: run only this job tree and stop when its root reached a final status;
            None: run the whole queue (of ``task_filter``).
        processes: pilot processes; 0 runs one pilot in this process (no fork; for debugging).
        task_filter: task types the pilots claim (default: every registered type).
        until_idle: stop when finished (a tree: its root ended; the queue: no active job left);
            False: run until ``stop`` is set or ``timeout``.
        progress: called every ``progress_interval`` seconds and at the end with the tree's
            :class:`Summary` (or, without a root, the counts per status).
        lease_seconds, poll_interval, max_batch: passed to each :class:`Worker`.
        modules: extra task modules the pilots import (those of every registered task type
            are always imported, so spawned pilots know the same types as this process).
        timeout: stop after this many seconds (``finished`` is then False).
        stop: set it (from another thread) to stop the run early.
        start_method: multiprocessing start method (default ``forkserver`` where available,
            else ``spawn``: never a plain fork of this possibly multi-threaded process). Pilots
            import the task modules and open their own connections.
        env: environment variables set in each pilot process (e.g. ``SURVEYDM_*`` settings
            the tasks read); pilots otherwise inherit the fork server's environment. With
            ``processes=0`` they are set in this process.

    Returns:
        RunReport (counts at the end, elapsed time, pilot restarts).

    Raises:
        surveydm.orchestration.store.JobNotFoundError: ``root_job_id`` does not exist.
        SurveydmError: no task type is registered, or the pilots exit with an error as
            they start, ``MAX_FAILED_STARTS`` times each in a row (a broken setup: bad
            settings in ``env``, an unimportable task module).
    """
    t0 = time.perf_counter()
    mods = sorted(set(task_modules()) | set(modules))
    load_task_modules(mods)
    tasks = sorted(task_filter) if task_filter is not None else sorted(TASKS)
    wk: dict[str, Any] = {
        "tasks": tasks,
        "root_id": root_job_id,
        "lease_seconds": lease_seconds,
        "poll_interval": poll_interval,
        "max_batch": max_batch,
    }
    registry = Registry(registry_url, pool_size=1, max_overflow=1)
    stop = stop or threading.Event()
    report = RunReport(root_job_id=root_job_id, summary=None)

    def finished() -> bool:
        return with_db_retry(_finished, what="checking progress")

    def _finished() -> bool:
        if root_job_id is not None:
            summ = store.status_summary(registry, root_job_id)
            report.summary = summ
            return summ.status in S.FINAL
        with registry.session(write=False) as s:
            return store.count_active(s, tasks=tasks) == 0

    def emit() -> None:
        if progress is not None:
            with_db_retry(_emit, what="reporting progress")

    def _emit() -> None:
        assert progress is not None
        if root_job_id is not None:
            progress(store.status_summary(registry, root_job_id))
        else:
            progress(_counts(registry, None, tasks))

    if root_job_id is not None:
        store.status_summary(registry, root_job_id)  # raises JobNotFoundError early
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if processes <= 0:
            os.environ.update(env or {})
            report.finished = _run_inline(
                registry_url, wk, stop, finished, emit, deadline, until_idle, progress_interval
            )
        else:
            report.finished, report.restarts = _run_processes(
                registry_url,
                mods,
                wk,
                dict(env or {}),
                processes,
                stop,
                finished,
                emit,
                deadline,
                until_idle,
                progress_interval,
                start_method,
            )
        emit()
        if root_job_id is not None:
            report.summary = with_db_retry(
                lambda: store.status_summary(registry, root_job_id), what="summarising"
            )
        report.counts = with_db_retry(
            lambda: _counts(registry, root_job_id, None if root_job_id else tasks),
            what="counting jobs",
        )
    finally:
        registry.dispose()
    report.elapsed = time.perf_counter() - t0
    return report


def _run_inline(
    url: str,
    wk: dict[str, Any],
    stop: threading.Event,
    finished: Callable[[], bool],
    emit: Callable[[], None],
    deadline: float | None,
    until_idle: bool,
    progress_interval: float,
) -> bool:
    worker = Worker(url, **wk)
    last = 0.0
    done = False

    def should_stop() -> bool:
        nonlocal done, last
        if time.monotonic() - last > progress_interval:
            last = time.monotonic()
            emit()
        if until_idle and finished():
            done = True
            return True
        return stop.is_set() or (deadline is not None and time.monotonic() > deadline)

    try:
        while not should_stop():
            if worker.step() == 0:
                worker.sweep()
                time.sleep(worker.poll_interval)
    finally:
        worker.close()
    return done


def _run_processes(
    url: str,
    mods: Sequence[str],
    wk: dict[str, Any],
    env: dict[str, str],
    processes: int,
    stop: threading.Event,
    finished: Callable[[], bool],
    emit: Callable[[], None],
    deadline: float | None,
    until_idle: bool,
    progress_interval: float,
    start_method: str | None,
) -> tuple[bool, int]:
    methods = mp.get_all_start_methods()
    method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
    ctx = mp.get_context(method)
    if method == "forkserver":
        # Pilots fork from a clean single-threaded server with these already imported: fast
        # starts, and no lock held by another thread of this process can be inherited.
        ctx.set_forkserver_preload(["surveydm.orchestration", *mods])

    def start(i: int) -> Any:
        p = ctx.Process(
            target=_pilot_main, args=(url, list(mods), wk, env), name=f"pilot-{i}", daemon=True
        )
        p.start()
        return p

    procs = [start(i) for i in range(processes)]
    started = [time.monotonic()] * processes
    restarts = 0
    failed_starts = 0  # pilots in a row that exited with an error soon after starting
    done = False
    last = 0.0
    try:
        while True:
            if until_idle and finished():
                done = True
                break
            if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
                break
            for i, p in enumerate(procs):
                if not p.is_alive():
                    p.join()
                    # A pilot's own error (exit code > 0) soon after its start, pilot after
                    # pilot, is a broken setup, not a crash: restarting forever would hang.
                    # Killed pilots (negative exit code: a signal) are always restarted.
                    early = time.monotonic() - started[i] < PILOT_START_SECONDS
                    failed_starts = failed_starts + 1 if early and p.exitcode > 0 else 0
                    if failed_starts >= MAX_FAILED_STARTS * processes:
                        raise SurveydmError(
                            f"pilot processes exit with an error as they start (exit code "
                            f"{p.exitcode}, {failed_starts} times in a row): see the errors "
                            "above; the jobs stay in the registry for the next run"
                        )
                    log.warning(
                        "pilot %s (pid %s) died (exit %s); restarting", i, p.pid, p.exitcode
                    )
                    procs[i] = start(i)
                    started[i] = time.monotonic()
                    restarts += 1
            if time.monotonic() - last > progress_interval:
                last = time.monotonic()
                emit()
            time.sleep(min(0.1, progress_interval))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: finish the current batch, then exit
        for p in procs:
            p.join(timeout=30)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return done, restarts
