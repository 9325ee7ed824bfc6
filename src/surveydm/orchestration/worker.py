"""Pilots: processes that claim ready jobs from the registry and execute them.

A :class:`Worker` loops: claim a batch of ready jobs (short transaction), execute each
(:func:`execute_claim`), end each step in its own transaction (compare-and-set on the claim
token, together with the task's ``on_commit`` callbacks, sub-jobs, tags and QC rows). A heartbeat
thread renews the leases of the jobs it holds; a job whose worker died (SIGKILL, lost host) is
re-queued by any pilot's :func:`~surveydm.orchestration.sweep.sweep` once its lease expired.

The batch size adapts: while jobs take less than ``short_job_seconds`` it at least doubles, and
grows at once to as many jobs as take about ``short_job_seconds`` together (up to
``max_batch``); it drops back to 1 for longer jobs, so long jobs are never hoarded by one
pilot; and it never exceeds the pilot's fair share of the ready jobs (ready jobs / pilots with
running jobs, :func:`~surveydm.orchestration.queue.queue_outlook`), so a short queue is spread
over every pilot. The completions of short jobs of one batch are group-committed
(:func:`~surveydm.orchestration.steps.record_successes_then`), and the pilot claims its next
batch in that same transaction: trivial jobs cost one transaction per batch, its statements
prepared once. The leases of a batch are renewed together by the heartbeat (one statement per
claimed batch, not per job). A pilot that stops with a batch claimed ahead gives it back
(:func:`~surveydm.orchestration.queue.release`); one that dies leaves it to the sweep, which
re-queues it once the lease expired.

Database connections: a worker holds at most its registry's small pool (2 + 2 overflow on
PostgreSQL; the main loop and the heartbeat use one each) and only for short transactions.
Connection failures (server restart, ``pg_terminate_backend``) are retried with back-off; the
pool's pre-ping replaces dead connections.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.orchestration.queue import claim as claim_jobs
from surveydm.orchestration.queue import queue_outlook, renew_leases
from surveydm.orchestration.queue import release as release_claims
from surveydm.orchestration.records import Claim, SweepResult
from surveydm.orchestration.steps import (
    LOST,
    StepResult,
    groupable,
    record_success,
    record_successes_then,
    run_step,
)
from surveydm.orchestration.sweep import sweep as sweep_jobs
from surveydm.orchestration.tasks import TASKS, CancelFlag, UnknownTaskError
from surveydm.orchestration.txn import job_session, with_db_retry
from surveydm.orchestration.wakeup import IdleWait

log = logging.getLogger("surveydm.worker")


@dataclass
class WorkerReport:
    """What a worker did: outcomes of the steps it executed, claims lost, sweeps."""

    outcomes: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    sweeps: int = 0
    elapsed: float = 0.0

    @property
    def executed(self) -> int:
        """Steps executed (whatever their outcome)."""
        return sum(self.outcomes.values())


def default_worker_name() -> str:
    """``host:pid``, the default identity of a pilot."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """A pilot: claims ready jobs and executes them, one at a time, in this process.

    Args:
        registry: a :class:`Registry` or a database URL (a URL gets a private registry with a
            small pool; pass a URL in a forked child).
        name: pilot identity stored in ``job.worker`` (default ``host:pid``).
        tasks: task types to claim (default: every type registered in this process).
        root_id: only claim jobs of this job tree.
        lease_seconds: lease length (default: settings ``lease_seconds``); heartbeats renew it
            every third of it.
        max_batch: most jobs claimed at once (see the module docstring).
        pilots: pilots expected to share the queue (``run_local`` passes its process count);
            the claim size is at most the ready jobs divided by the larger of this and the
            pilots seen holding running jobs.
        poll_interval: longest wait of an idle pilot, in seconds. On PostgreSQL an idle pilot
            wakes as soon as jobs become ready (``LISTEN/NOTIFY``) and looks again after this
            long at the latest; on SQLite it polls with exponential back-off from
            ``min_poll_interval`` up to this (see :mod:`~surveydm.orchestration.wakeup`).
        min_poll_interval: first back-off sleep after the last job.
        sweep_interval: seconds between maintenance sweeps while busy (default lease / 2;
            idle pilots sweep every poll).
        short_job_seconds: jobs faster than this grow the claim batch.
        durable: flush every job transition to disk before going on (PostgreSQL
            ``synchronous_commit``); off by default, see :func:`job_session` for why that is safe.

    Raises:
        SurveydmError: no task type is registered (load the task modules first).
    """

    def __init__(
        self,
        registry: Registry | str,
        *,
        name: str | None = None,
        tasks: list[str] | None = None,
        root_id: int | None = None,
        lease_seconds: float | None = None,
        max_batch: int = 256,
        pilots: int = 1,
        poll_interval: float = 0.5,
        min_poll_interval: float = 0.005,
        sweep_interval: float | None = None,
        short_job_seconds: float = 0.05,
        durable: bool = False,
    ) -> None:
        if isinstance(registry, str):
            self.registry = Registry(registry)
            self._own_registry = True
        else:
            self.registry = registry
            self._own_registry = False
        if lease_seconds is None:
            from surveydm.config import load_settings

            lease_seconds = load_settings().lease_seconds
        if lease_seconds <= 0:
            raise SurveydmError(f"lease_seconds must be positive, got {lease_seconds}")
        self.tasks = sorted(tasks) if tasks is not None else sorted(TASKS)
        if not self.tasks:
            raise SurveydmError("no task types registered: load the task modules first")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise UnknownTaskError(
                f"unknown task types {unknown} (known: {', '.join(sorted(TASKS))})"
            )
        self.name = name or default_worker_name()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.root_id = root_id
        self.lease_seconds = float(lease_seconds)
        self.max_batch = max(1, int(max_batch))
        self.pilots = max(1, int(pilots))
        self.poll_interval = float(poll_interval)
        self.min_poll_interval = min(float(min_poll_interval), self.poll_interval)
        self._idle: IdleWait | None = None
        self.sweep_interval = (
            float(sweep_interval) if sweep_interval is not None else self.lease_seconds / 2
        )
        self.short_job_seconds = short_job_seconds
        #: Most seconds a finished short job waits for the group commit of its batch.
        self.group_commit_seconds = 0.2
        #: Least seconds between two sweeps of an idle pilot.
        self.idle_sweep_interval = min(1.0, self.lease_seconds / 4)
        #: Least seconds between two full sweeps (pending/waiting repair scans) of a pilot.
        self.full_sweep_interval = self.lease_seconds
        self._last_full_sweep = 0.0
        self.durable = durable
        self.report = WorkerReport()
        self._batch = 1
        #: Claims taken ahead in the last group commit's transaction, run by the next step.
        self._ahead: list[Claim] = []
        self._held: dict[str, dict[int, CancelFlag]] = {}
        self._held_lock = threading.Lock()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._last_sweep = 0.0

    # -- heartbeat -----------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        interval = self.lease_seconds / 3
        while not self._hb_stop.wait(interval):
            self.heartbeat()

    def heartbeat(self) -> None:
        """Renew the leases of the held jobs; flag the lost ones as cancelled."""
        with self._held_lock:
            held = {tok: dict(jobs) for tok, jobs in self._held.items()}
        if not held:
            return
        try:
            with job_session(self.registry, durable=self.durable) as s:
                alive = renew_leases(s, held, self.lease_seconds)
        except Exception as exc:  # noqa: BLE001  (next beat retries; the pool reconnects)
            log.warning("heartbeat of %s failed: %s", self.name, exc)
            return
        for jobs in held.values():
            for jid, ev in jobs.items():
                if jid not in alive:
                    ev.set()

    def start_heartbeat(self) -> None:
        """Start the heartbeat thread (idempotent)."""
        if self._hb_thread is None or not self._hb_thread.is_alive():
            self._hb_stop.clear()
            self._hb_thread = threading.Thread(
                target=self._heartbeat_loop, name=f"heartbeat-{self.name}", daemon=True
            )
            self._hb_thread.start()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread."""
        self._hb_stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(timeout=5)
            self._hb_thread = None

    # -- one round ---------------------------------------------------------------------------
    def _claim_in(self, s: Session, limit: int) -> list[Claim]:
        return claim_jobs(
            s,
            worker=self.name,
            host=self.host,
            pid=self.pid,
            lease_seconds=self.lease_seconds,
            limit=limit,
            tasks=self.tasks,
            root_id=self.root_id,
        )

    def _hold(self, claims: list[Claim]) -> list[Claim]:
        """Hand committed claims to the heartbeat (it renews their lease from now on)."""
        if claims:
            with self._held_lock:
                self._held[claims[0].token] = {c.id: CancelFlag() for c in claims}
        return claims

    def _next_batch(self, mean: float) -> int:
        """Batch size after a batch whose jobs took ``mean`` seconds each (their own code):
        1 for jobs of ``short_job_seconds`` or more; else at least double, and at once as
        many as take about ``short_job_seconds`` together (no-op jobs reach ``max_batch``
        after their first batch, not after eight doublings), at most ``max_batch``."""
        if mean >= self.short_job_seconds:
            return 1
        fits = int(self.short_job_seconds / mean) if mean > 0 else self.max_batch
        return max(1, min(max(self._batch * 2, fits), self.max_batch))

    def _claim_size(self, s: Session) -> int:
        """Jobs to claim now: the grown batch size, capped by this pilot's fair share of the
        ready jobs (see the module docstring)."""
        if self._batch <= 1:
            return 1
        out = queue_outlook(s, cap=self._batch * max(self.pilots, 8), root_id=self.root_id)
        share = -(-out.ready // max(self.pilots, out.pilots + 1))  # ceil
        return max(1, min(self._batch, share))

    def claim(self, limit: int | None = None) -> list[Claim]:
        """Claim up to ``limit`` ready jobs (default: the adaptive batch size) in one short
        transaction, retried on database errors."""

        def do() -> list[Claim]:
            with job_session(self.registry, durable=self.durable) as s:
                n = limit if limit is not None else self._claim_size(s)
                return self._claim_in(s, n)

        return self._hold(with_db_retry(do, what=f"{self.name} claiming jobs"))

    def release(self) -> int:
        """Give back the batch claimed ahead and not started (when stopping); returns the
        number of jobs released."""
        claims, self._ahead = self._ahead, []
        if not claims:
            return 0

        def do() -> int:
            with job_session(self.registry, durable=self.durable) as s:
                return release_claims(s, claims)

        try:
            return with_db_retry(do, what=f"{self.name} releasing jobs")
        except Exception as exc:  # noqa: BLE001  (their lease expires; the sweep re-queues them)
            log.warning("%s: could not release %d jobs: %s", self.name, len(claims), exc)
            return 0
        finally:
            with self._held_lock:
                self._held.pop(claims[0].token, None)

    def sweep(self, *, full: bool | None = None) -> SweepResult:
        """Run the maintenance sweep (re-queue lost jobs; when ``full`` also promote pending
        jobs and wake super-jobs; default: full once every ``full_sweep_interval``)."""
        now = time.monotonic()
        if full is None:
            full = now - self._last_full_sweep >= self.full_sweep_interval
        if full:
            self._last_full_sweep = now

        def do() -> SweepResult:
            with job_session(self.registry, durable=self.durable) as s:
                return sweep_jobs(s, full=bool(full))

        self._last_sweep = now
        self.report.sweeps += 1
        return with_db_retry(do, what=f"{self.name} sweeping")

    def step(self, *, ahead: bool = False) -> int:
        """Execute one batch: the one claimed ahead, else a newly claimed one; returns the
        number of steps executed (0: idle). ``ahead``: claim the next batch in the
        transaction of this batch's group commit (the pilot loop does; the caller must then
        run :meth:`step` again or :meth:`release`)."""
        if time.monotonic() - self._last_sweep > self.sweep_interval:
            self.sweep()
        claims, self._ahead = self._ahead, []
        if not claims:
            claims = self.claim()
        if not claims:
            return 0
        token = claims[0].token
        with self._held_lock:
            events = self._held.get(token, {})
        running = 0.0  # seconds spent in the tasks' own code (not in claims or commits)
        group: list[StepResult] = []
        group_started = 0.0

        def account(outcome: str) -> None:
            if outcome == LOST:
                self.report.lost += 1
            else:
                self.report.outcomes[outcome] = self.report.outcomes.get(outcome, 0) + 1

        def flush(then: Any = None) -> Any:
            outcomes, after = record_successes_then(
                self.registry, group, durable=self.durable, then=then
            )
            for outcome in outcomes:
                account(outcome)
            with self._held_lock:
                held = self._held.get(token, {})
                for r in group:
                    held.pop(r.claim.id, None)
            group.clear()
            return after

        try:
            for c in claims:
                # Completed steps wait for the group commit at most ``group_commit_seconds``.
                if group and time.perf_counter() - group_started > self.group_commit_seconds:
                    flush()
                ev = events.get(c.id) or CancelFlag()
                if ev.is_set():
                    continue  # aborted while waiting in the batch; the sweep/abort handled it
                t_step = time.perf_counter()
                res = run_step(self.registry, c, cancel=ev, durable=self.durable)
                running += time.perf_counter() - t_step
                if isinstance(res, str):
                    account(res)
                elif not groupable(res) or len(claims) == 1:
                    account(record_success(self.registry, res, durable=self.durable))
                else:
                    if not group:
                        group_started = time.perf_counter()
                    group.append(res)
                    continue
                with self._held_lock:
                    self._held.get(token, {}).pop(c.id, None)
            # The tasks' own time decides (database latency on a loaded server must not make
            # trivial jobs look long and shrink the batch).
            self._batch = self._next_batch(running / len(claims))
            if group:
                then = None
                if ahead:

                    def then(s: Session) -> list[Claim]:
                        return self._claim_in(s, self._claim_size(s))

                self._ahead = self._hold(flush(then) or [])
        finally:
            with self._held_lock:
                self._held.pop(token, None)
        return len(claims)

    # -- loop --------------------------------------------------------------------------------
    def run(
        self,
        *,
        once: bool = False,
        stop: threading.Event | Any | None = None,
        until: Callable[[], bool] | None = None,
        max_steps: int | None = None,
    ) -> WorkerReport:
        """Run the pilot loop in this thread.

        Args:
            once: return as soon as no job is ready and a sweep changed nothing (drain mode,
                for batch-system pilots); otherwise poll forever.
            stop: an event (threading or multiprocessing); the loop returns once it is set
                (after the current batch).
            until: called when idle; the loop returns when it answers True.
            max_steps: return after executing this many steps.
        """
        t0 = time.perf_counter()
        self.start_heartbeat()
        steps = 0
        try:
            while not (stop is not None and stop.is_set()):
                n = self.step(ahead=True)
                steps += n
                if max_steps is not None and steps >= max_steps:
                    break
                if n:
                    if self._idle is not None:
                        self._idle.reset()
                    continue
                # Idle: sweep (lost jobs, races; rate-limited so that many idle pilots do not
                # hammer the database), then maybe stop, else sleep.
                stopping = once or (until is not None and until())
                due = time.monotonic() - self._last_sweep >= self.idle_sweep_interval
                if (stopping or due) and self.sweep(full=True if stopping else None).changed:
                    continue
                if stopping:
                    break
                self.wait_for_work(stop)
        finally:
            self.release()  # a batch claimed ahead and not started goes back to the queue
            self.stop_heartbeat()
            self.report.elapsed += time.perf_counter() - t0
        return self.report

    def wait_for_work(self, stop: threading.Event | Any | None = None) -> bool:
        """Wait while idle: until a PostgreSQL notification says jobs became ready, else
        a back-off sleep (see :class:`~surveydm.orchestration.wakeup.IdleWait`). True when
        woken by a notification."""
        if self._idle is None:
            self._idle = IdleWait(
                self.registry.url,
                min_wait=self.min_poll_interval,
                max_wait=self.poll_interval,
                stop=stop,
            )
        return self._idle.wait()

    def close(self) -> None:
        """Stop the heartbeat, stop listening, and release the registry if the worker
        created it."""
        self.release()
        self.stop_heartbeat()
        if self._idle is not None:
            self._idle.close()
            self._idle = None
        if self._own_registry:
            self.registry.dispose()
