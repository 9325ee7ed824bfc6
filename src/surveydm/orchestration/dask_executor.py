"""Run jobs on a Dask distributed cluster (and, through dask-jobqueue, on Slurm, PBS, SGE,
HTCondor or LSF).

Design: the *driver* (this function, e.g. ``surveydm worker --executor dask``) is the only pilot
that talks to the queue for claiming. It claims ready jobs (same claim as local pilots:
``FOR UPDATE SKIP LOCKED`` / ``BEGIN IMMEDIATE``), keeps their leases alive with its heartbeat
thread, and submits one Dask task per claimed job, keeping about two per Dask thread in flight.
Each Dask task opens (once per Dask worker process) its own registry with a small pool and
runs :func:`~surveydm.orchestration.steps.execute_claim`, which ends the job in the database
with the usual compare-and-set on the claim token, together with the task's ``on_commit``
products. So:

- Dask decides *where* jobs run (placement, resources, adaptive scaling of dask-jobqueue);
  the registry stays the single source of truth for *what* runs and what happened.
- A Dask worker that dies (Dask reports the task as failed or ``KilledWorker``) is a lost
  worker, recorded by the driver as a lease that expired would be (the job is re-queued,
  counted against ``max_lost``, not its fault budget); a driver that dies leaves leases that
  expire, and any pilot's sweep re-queues the jobs.
- Dask worker processes hold at most a 1 + 4 connection pool each; the driver holds 2 + 2.

The alternative, a pilot loop inside every Dask worker, would bypass Dask's scheduler and need
one long-running task per worker; the driver design keeps Dask in charge of the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.orchestration.executor import RunMonitor, RunOptions, RunReport
from surveydm.orchestration.records import Claim, LeaseLostError
from surveydm.orchestration.steps import LOST, execute_claim
from surveydm.orchestration.tasks import load_task_modules
from surveydm.orchestration.transitions import lose_claim
from surveydm.orchestration.txn import job_session, with_db_retry
from surveydm.orchestration.worker import Worker

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
    options: RunOptions | None = None,
    **changes: Any,
) -> RunReport:
    """Execute ready jobs on a Dask cluster until the work is finished.

    Args:
        registry_url: database URL, reachable from the Dask workers.
        client: a ``distributed.Client``; or give ``scheduler`` (``tcp://host:8786``).
        root_job_id: run only this tree; stop when its root reached a final status.
        options: how to run (:class:`~surveydm.orchestration.executor.RunOptions`; Dask uses
            ``max_in_flight``, not ``processes``).
        changes: fields of ``options`` to change.

    Raises:
        SurveydmError: neither ``client`` nor ``scheduler`` given, or no task type registered.
        TypeError: a change names no option.
    """
    from distributed import Client

    opts = RunOptions.of(options, **changes)
    if client is None:
        if scheduler is None:
            raise SurveydmError("run_dask needs a Dask client or a scheduler address")
        client = own_client = Client(scheduler)
    else:
        own_client = None
    driver = Worker(
        registry_url,
        name=f"dask-driver:{client.scheduler.address}",
        **opts.worker_kwargs(root_job_id),
    )
    monitor = RunMonitor(driver.registry, root_job_id, opts)
    in_flight: dict[Any, Claim] = {}
    driver.start_heartbeat()
    try:
        _drive(client, driver, registry_url, opts, monitor, in_flight)
    finally:
        for fut in in_flight:
            fut.cancel()
        driver.stop_heartbeat()
        report = monitor.final_report()
        driver.close()
        if own_client is not None:
            own_client.close()
    return report


def _drive(
    client: Any,
    driver: Worker,
    url: str,
    opts: RunOptions,
    monitor: RunMonitor,
    in_flight: dict[Any, Claim],
) -> None:
    """The driver loop: keep the cluster fed with claimed jobs until the monitor says stop."""
    mods = opts.all_modules
    while True:
        claims = _submit_more(client, driver, url, mods, opts, in_flight)
        if in_flight:
            for fut in _finished_futures(in_flight, opts.poll_interval):
                _collect(driver, fut, in_flight.pop(fut))
        monitor.tick()
        if claims or in_flight or driver.sweep().changed:
            continue
        if monitor.should_stop():
            return
        time.sleep(opts.poll_interval)


def _submit_more(
    client: Any,
    driver: Worker,
    url: str,
    mods: Sequence[str],
    opts: RunOptions,
    in_flight: dict[Any, Claim],
) -> list[Claim]:
    """Claim jobs up to the cluster's capacity and submit one Dask task per claim."""
    nthreads = sum(client.nthreads().values()) or 1
    free = (opts.max_in_flight or 2 * nthreads) - len(in_flight)
    claims = driver.claim(min(free, 64)) if free > 0 else []
    if claims:
        with driver._held_lock:
            driver._held[claims[0].token] = {c.id: threading.Event() for c in claims}
    for c in claims:
        fut = client.submit(
            run_claim_on_dask_worker,
            url,
            c.to_dict(),
            mods,
            key=f"surveydm-job-{c.id}-{c.token}",
            pure=False,
        )
        in_flight[fut] = c
    return claims


def _finished_futures(in_flight: dict[Any, Claim], timeout: float) -> set[Any]:
    from distributed import wait

    try:
        done, _ = wait(list(in_flight), timeout=timeout, return_when="FIRST_COMPLETED")
    except TimeoutError:  # nothing finished within the timeout
        return set()
    return done


def _collect(driver: Worker, fut: Any, claim: Claim) -> None:
    """Account for a finished Dask task. A task that died in Dask (its worker was lost:
    ``KilledWorker``, a cancelled task) is a lost worker, as a lease that expired: the
    system's fault, counted against the job's ``max_lost``, not its fault budget."""
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

    def lost() -> str:
        with job_session(driver.registry) as s:
            return lose_claim(s, claim, f"Dask task failed: {type(exc).__name__}: {exc}")

    try:
        outcome = with_db_retry(lost, what=f"recording the lost worker of job {claim.id}")
    except LeaseLostError:
        outcome = LOST
    driver.report.outcomes[outcome] = driver.report.outcomes.get(outcome, 0) + 1
