"""Run jobs with local pilot processes until a job tree (or the whole queue) is finished.

:func:`run_local` starts ``processes`` pilot processes (through a fork server; each imports the
task modules and opens its own registry, so no connection or lock is shared), watches the progress
by aggregate query, calls ``progress(summary)`` for live displays (``surveydm night``), restarts
pilots that died (their jobs come back when the lease expires) and stops them when the work is
finished.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.orchestration.executor import RunMonitor, RunOptions, RunReport
from surveydm.orchestration.tasks import load_task_modules
from surveydm.orchestration.worker import Worker

log = logging.getLogger("surveydm.worker")

#: A pilot that exits with an error within this many seconds of its start failed to start.
PILOT_START_SECONDS = 10.0
#: Failed starts in a row, per pilot process, after which :func:`run_local` gives up.
MAX_FAILED_STARTS = 3


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
    # Everything loaded so far lives as long as the pilot: keep it out of the cyclic garbage
    # collector's full passes, which otherwise walk those ~10^5 objects every few thousand
    # jobs (tens of ms each, more than the jobs themselves on a no-op queue).
    gc.freeze()
    try:
        worker.run(stop=stop)
    finally:
        worker.close()


def run_local(
    registry_url: str,
    root_job_id: int | None = None,
    options: RunOptions | None = None,
    **changes: Any,
) -> RunReport:
    """Run jobs with ``options.processes`` local pilot processes until the work is finished.

    Args:
        registry_url: database URL (each pilot opens its own registry).
        root_job_id: run only this job tree and stop when its root reached a final status;
            None: run the whole queue (of ``options.task_filter``).
        options: how to run (:class:`~surveydm.orchestration.executor.RunOptions`).
        changes: fields of ``options`` to change (``processes=4``, ``progress=...``).

    Returns:
        RunReport (counts at the end, elapsed time, pilot restarts).

    Raises:
        JobNotFoundError: ``root_job_id`` does not exist.
        SurveydmError: no task type is registered, or the pilots exit with an error as
            they start, ``MAX_FAILED_STARTS`` times each in a row (a broken setup: bad
            settings in ``env``, an unimportable task module).
        TypeError: a change names no option.
    """
    opts = RunOptions.of(options, **changes)
    mods = opts.all_modules
    load_task_modules(mods)
    registry = Registry(registry_url, pool_size=1, max_overflow=1)
    monitor = RunMonitor(registry, root_job_id, opts)
    try:
        monitor.check_root()
        wk = opts.worker_kwargs(root_job_id)
        if opts.processes <= 0:
            os.environ.update(opts.env or {})
            _run_inline(registry_url, wk, monitor)
        else:
            monitor.report.restarts = _run_processes(registry_url, mods, wk, opts, monitor)
        return monitor.final_report()
    finally:
        registry.dispose()


def _run_inline(url: str, wk: dict[str, Any], monitor: RunMonitor) -> None:
    worker = Worker(url, **wk)
    try:
        while True:
            monitor.tick()
            if monitor.should_stop():
                break
            if worker.step() == 0:
                worker.sweep()
                worker.wait_for_work()
    finally:
        worker.close()


def _run_processes(
    url: str, mods: Sequence[str], wk: dict[str, Any], opts: RunOptions, monitor: RunMonitor
) -> int:
    """Run the pilot processes until the monitor says stop; returns the restarts."""
    methods = mp.get_all_start_methods()
    method = opts.start_method or ("forkserver" if "forkserver" in methods else "spawn")
    ctx = mp.get_context(method)
    if method == "forkserver":
        # Pilots fork from a clean single-threaded server with these already imported: fast
        # starts, and no lock held by another thread of this process can be inherited.
        ctx.set_forkserver_preload(["surveydm.orchestration", *mods])
    env = dict(opts.env or {})

    def start(i: int) -> Any:
        p = ctx.Process(
            target=_pilot_main, args=(url, list(mods), wk, env), name=f"pilot-{i}", daemon=True
        )
        p.start()
        return p

    procs = [start(i) for i in range(opts.processes)]
    started = [time.monotonic()] * opts.processes
    restarts = 0
    failed_starts = 0  # pilots in a row that exited with an error soon after starting
    try:
        while not monitor.should_stop():
            for i, p in enumerate(procs):
                if p.is_alive():
                    continue
                p.join()
                # A pilot's own error (exit code > 0) soon after its start, pilot after pilot,
                # is a broken setup, not a crash: restarting forever would hang. Killed pilots
                # (negative exit code: a signal) are always restarted.
                early = time.monotonic() - started[i] < PILOT_START_SECONDS
                failed_starts = failed_starts + 1 if early and p.exitcode > 0 else 0
                if failed_starts >= MAX_FAILED_STARTS * opts.processes:
                    raise SurveydmError(
                        f"pilot processes exit with an error as they start (exit code "
                        f"{p.exitcode}, {failed_starts} times in a row): see the errors "
                        "above; the jobs stay in the registry for the next run"
                    )
                log.warning("pilot %s (pid %s) died (exit %s); restarting", i, p.pid, p.exitcode)
                procs[i] = start(i)
                started[i] = time.monotonic()
                restarts += 1
            monitor.tick()
            time.sleep(min(0.1, opts.progress_interval))
    finally:
        _stop_all(procs)
    return restarts


def _stop_all(procs: list[Any]) -> None:
    """SIGTERM (each finishes its current batch), then SIGKILL what is left after 30 s."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=30)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
