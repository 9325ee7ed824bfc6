"""Run jobs on a Dask distributed cluster (and, through dask-jobqueue, on Slurm, PBS, SGE,
HTCondor or LSF).

Design: the *driver* (this function, e.g. ``surveydm worker --executor dask``) is the only pilot
that talks to the queue for claiming. It claims ready jobs (same claim as local pilots:
``FOR UPDATE SKIP LOCKED`` / ``BEGIN IMMEDIATE``), keeps their leases alive with its heartbeat
thread, and submits one Dask task per claimed job, keeping about two per Dask thread in flight.
Each Dask task opens (once per Dask worker process) its own registry with a small pool and
runs :func:`~surveydm.orchestration.worker.execute_claim`, which ends the job in the database
with the usual compare-and-set on the claim token, together with the task's ``on_commit``
products. So:

- Dask decides *where* jobs run (placement, resources, adaptive scaling of dask-jobqueue);
  the registry stays the single source of truth for *what* runs and what happened.
- A Dask worker that dies (Dask reports the task as failed or ``KilledWorker``) gives a fault
  recorded by the driver, so the job is retried with back-off like any fault; a driver that dies
  leaves leases that expire, and any pilot's sweep re-queues the jobs.
- Dask worker processes hold at most a 1 + 4 connection pool each; the driver holds 2 + 2.

The alternative, a pilot loop inside every Dask worker, would bypass Dask's scheduler and need
one long-running task per worker; the driver design keeps Dask in charge of the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.orchestration import status as S
from surveydm.orchestration import store
from surveydm.orchestration.local import RunReport, _counts
from surveydm.orchestration.store import Claim, Summary
from surveydm.orchestration.tasks import TASKS, load_task_modules, task_modules
from surveydm.orchestration.worker import Worker, execute_claim, job_session, with_db_retry

log = logging.getLogger("surveydm.worker")

_REGISTRIES: dict[str, Registry] = {}
_REG_LOCK = threading.Lock()


def _worker_registry(url: str) -> Registry:
    """One registry per Dask worker process and URL (reused by all its tasks)."""
    with _REG_LOCK:
        reg = _REGISTRIES.get(url)
        if reg is None:
            reg = _REGISTRIES[url] = Registry(url, pool_size=1, max_overflow=4)
        return reg


def run_claim_on_dask_worker(url: str, claim: dict[str, Any], modules: Sequence[str]) -> str:
    """The Dask task: execute one claimed job step and record it; returns the new status."""
    missing = [m for m in modules if m not in _loaded_modules]
    if missing:
        load_task_modules(missing)
        _loaded_modules.update(missing)
    return execute_claim(_worker_registry(url), Claim(**claim))


_loaded_modules: set[str] = set()


def run_dask(
    registry_url: str,
    *,
    client: Any | None = None,
    scheduler: str | None = None,
    root_job_id: int | None = None,
    task_filter: Sequence[str] | None = None,
    until_idle: bool = True,
    progress: Callable[[Summary | dict[str, int]], None] | None = None,
    progress_interval: float = 0.5,
    lease_seconds: float | None = None,
    poll_interval: float = 0.2,
    max_in_flight: int | None = None,
    modules: Sequence[str] = (),
    timeout: float | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """Execute ready jobs on a Dask cluster until the work is finished.

    Args:
        registry_url: database URL, reachable from the Dask workers.
        client: a ``distributed.Client``; or give ``scheduler`` (``tcp://host:8786``).
        root_job_id: run only this tree; stop when its root reached a final status.
        task_filter: task types to run (default: every registered type).
        until_idle: stop when finished (else run until ``stop``/``timeout``).
        progress: called with the tree's :class:`Summary` (or counts per status).
        lease_seconds, poll_interval: as for :class:`~surveydm.orchestration.Worker`.
        max_in_flight: jobs submitted to Dask at once (default 2 per Dask thread).
        modules: task modules the Dask workers import (default: the modules of every task type
            registered here).
        timeout: stop after this many seconds.
        stop: set it to stop early.

    Raises:
        SurveydmError: neither ``client`` nor ``scheduler`` given, or no task type registered.
    """
    from distributed import Client, wait

    if client is None:
        if scheduler is None:
            raise SurveydmError("run_dask needs a Dask client or a scheduler address")
        client = Client(scheduler)
        own_client = True
    else:
        own_client = False
    mods = sorted(set(task_modules()) | set(modules))
    tasks = sorted(task_filter) if task_filter is not None else sorted(TASKS)
    driver = Worker(
        registry_url,
        name=f"dask-driver:{client.scheduler.address}",
        tasks=tasks,
        root_id=root_job_id,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
    )
    stop = stop or threading.Event()
    report = RunReport(root_job_id=root_job_id, summary=None)
    t0 = time.perf_counter()
    deadline = None if timeout is None else time.monotonic() + timeout
    in_flight: dict[Any, Claim] = {}
    last_progress = 0.0

    def finished() -> bool:
        def check() -> bool:
            if root_job_id is not None:
                return store.status_summary(driver.registry, root_job_id).status in S.FINAL
            with driver.registry.session(write=False) as s:
                return store.count_active(s, tasks=tasks) == 0

        return with_db_retry(check, what="checking progress")

    def emit() -> None:
        if progress is None:
            return
        if root_job_id is not None:
            progress(store.status_summary(driver.registry, root_job_id))
        else:
            progress(_counts(driver.registry, None, tasks))

    driver.start_heartbeat()
    try:
        while True:
            nthreads = sum(client.nthreads().values()) or 1
            capacity = max_in_flight or 2 * nthreads
            free = capacity - len(in_flight)
            claims = driver.claim(min(free, 64)) if free > 0 else []
            if claims:
                with driver._held_lock:
                    driver._held[claims[0].token] = {c.id: threading.Event() for c in claims}
                for c in claims:
                    fut = client.submit(
                        run_claim_on_dask_worker,
                        registry_url,
                        c.to_dict(),
                        mods,
                        key=f"surveydm-job-{c.id}-{c.token}",
                        pure=False,
                    )
                    in_flight[fut] = c
            if in_flight:
                try:
                    done, _ = wait(
                        list(in_flight), timeout=poll_interval, return_when="FIRST_COMPLETED"
                    )
                except TimeoutError:  # nothing finished within poll_interval
                    done = set()
                for fut in done:
                    c = in_flight.pop(fut)
                    _collect(driver, fut, c)
            if time.monotonic() - last_progress > progress_interval:
                last_progress = time.monotonic()
                emit()
            if claims or in_flight:
                continue
            if driver.sweep().changed:
                continue
            if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
                break
            if until_idle and finished():
                report.finished = True
                break
            time.sleep(poll_interval)
    finally:
        for fut in in_flight:
            fut.cancel()
        driver.stop_heartbeat()
        emit()
        if root_job_id is not None:
            report.summary = store.status_summary(driver.registry, root_job_id)
        report.counts = _counts(driver.registry, root_job_id, None if root_job_id else tasks)
        driver.close()
        if own_client:
            client.close()
    report.elapsed = time.perf_counter() - t0
    return report


def _collect(driver: Worker, fut: Any, claim: Claim) -> None:
    """Account for a finished Dask task; a task that died in Dask becomes a job fault."""
    with driver._held_lock:
        held = driver._held.get(claim.token)
        if held is not None:
            held.pop(claim.id, None)
            if not held:
                driver._held.pop(claim.token, None)
    if fut.status == "finished":
        outcome = fut.result()
        driver.report.outcomes[outcome] = driver.report.outcomes.get(outcome, 0) + 1
        return
    exc = fut.exception() if fut.status == "error" else RuntimeError(f"dask task {fut.status}")
    log.warning("job %s: Dask task failed: %s", claim.id, exc)

    def fail() -> str:
        with job_session(driver.registry) as s:
            return store.fail_step(
                s, claim, fault=f"Dask task failed: {type(exc).__name__}: {exc}", backoff=1.0
            )

    try:
        outcome = with_db_retry(fail, what=f"failing job {claim.id}")
    except store.LeaseLostError:
        outcome = "lost"
    driver.report.outcomes[outcome] = driver.report.outcomes.get(outcome, 0) + 1
