"""Crash safety of the job system: workers SIGKILLed mid-job, database connections terminated
mid-run, and a 1,000-job run with pilots killed at random (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import threading
import time

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from conftest import PG_ADMIN_URL
from surveydm.db.models.jobs import Job, JobAttempt
from surveydm.db.models.production import Product
from surveydm.orchestration import Worker, load_task_modules, run_local, status_summary, submit
from surveydm.orchestration.status import JobStatus as S

load_task_modules(["jobtasks"])

FORK = mp.get_context("fork")


def _pilot(url: str, lease: float) -> None:
    load_task_modules(["jobtasks"])
    Worker(url, lease_seconds=lease, poll_interval=0.02).run()


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _status(registry, job_id: int) -> str:
    with registry.session(write=False) as s:
        return s.get(Job, job_id).status


def _products_per_job(registry, kind: str = "t_record") -> dict[int, int]:
    with registry.session(write=False) as s:
        rows = s.execute(
            select(Product.job_id, func.count())
            .where(Product.product_type == kind)
            .group_by(Product.job_id)
        ).all()
    return {int(j): int(n) for j, n in rows}


def test_sigkilled_worker_job_is_rerun_and_product_registered_once(registry):
    job = submit(registry, "t_record", config={"sleep": 30})  # sleeps on attempt 1 only
    p = FORK.Process(target=_pilot, args=(registry.url, 0.8), daemon=True)
    p.start()
    _wait_for(lambda: _status(registry, job) == S.RUNNING)
    with registry.session(write=False) as s:
        assert s.get(Job, job).pid == p.pid
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert _status(registry, job) == S.RUNNING  # nobody knows yet: the lease is still valid
    report = run_local(registry.url, None, processes=0, lease_seconds=0.8, poll_interval=0.05)
    assert report.finished
    with registry.session(write=False) as s:
        j = s.get(Job, job)
    assert j.status == S.DONE and j.attempts == 2 and j.lost == 1
    assert "lease expired" in j.fault and j.output["attempt"] == 2
    assert j.output["pid"] != p.pid
    assert _products_per_job(registry) == {job: 1}
    # the lost attempt is on record, tagged as the system's fault, with the killed pilot's pid
    with registry.session(write=False) as s:
        rows = s.scalars(select(JobAttempt).where(JobAttempt.job_id == job).order_by(JobAttempt.id))
        history = [(a.attempt, a.outcome, a.pid) for a in rows]
    assert history == [(1, "lost", p.pid), (2, "ok", j.output["pid"])]


def test_worker_reconnects_after_pg_terminate_backend(registry):
    if registry.dialect != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL only")
    root = submit(registry, "t_many", config={"n": 24, "sub_config": {"sleep": 0.15}})
    # sleep on every attempt so that terminations hit running workers
    with registry.session() as s:
        s.get(Job, root).config = {
            "n": 24,
            "sub_config": {"sleep": 0.15, "always_sleep": True},
        }
    dbname = make_url(registry.url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    killed = []
    result = {}

    def run() -> None:
        result["report"] = run_local(
            registry.url, root, processes=2, lease_seconds=3, poll_interval=0.05
        )

    t = threading.Thread(target=run)
    t.start()
    _wait_for(lambda: status_summary(registry, root).counts[S.DONE] >= 2)
    for _ in range(3):
        with admin.connect() as c:
            killed += c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": dbname},
            ).all()
        time.sleep(0.4)
    t.join(timeout=120)
    admin.dispose()
    assert not t.is_alive()
    report = result["report"]
    assert killed, "no backend was terminated"
    assert report.finished and report.ok
    assert report.restarts == 0  # pilots reconnected instead of dying
    assert report.counts[S.DONE] == 24
    per_job = _products_per_job(registry)
    assert len(per_job) == 24 and set(per_job.values()) == {1}


def _running_pids(registry, root: int) -> set[int]:
    with registry.session(write=False) as s:
        rows = s.execute(
            select(Job.pid).where(Job.parent_id == root, Job.status == S.RUNNING)
        ).all()
    return {int(pid) for (pid,) in rows if pid}


def test_thousand_jobs_with_pilots_killed_at_random(registry):
    n = 1000
    # the root may be killed too (prolog, epilog): give it room for that
    root = submit(
        registry,
        "t_many",
        config={"n": n, "sub_config": {"sleep": 0.004, "always_sleep": True}},
        max_attempts=20,
    )
    rng = random.Random(42)
    result = {}

    def run() -> None:
        result["report"] = run_local(
            registry.url, root, processes=3, lease_seconds=1.0, poll_interval=0.05, max_batch=8
        )

    t = threading.Thread(target=run)
    t.start()
    kills = 0
    deadline = time.monotonic() + 120
    while t.is_alive() and time.monotonic() < deadline:
        pilots = {p.pid for p in mp.active_children() if p.name.startswith("pilot-")}
        if not pilots or kills >= 12 or status_summary(registry, root).counts[S.DONE] >= 0.9 * n:
            time.sleep(0.05)
            continue
        # Odd kills hit any pilot (idle, claiming, running the root's prolog or epilog); even
        # kills wait for a pilot that holds sub-jobs, so that the re-run path is exercised
        # whatever the timing (the root's prolog and pilot restarts can take seconds).
        victims = pilots if kills % 2 else _running_pids(registry, root) & pilots
        if not victims:
            time.sleep(0.01)
            continue
        try:
            os.kill(rng.choice(sorted(victims)), signal.SIGKILL)
        except ProcessLookupError:  # it exited between the listing and the kill (run ended)
            continue
        kills += 1
        time.sleep(rng.uniform(0.2, 0.6))
    t.join(timeout=60)
    assert not t.is_alive()
    report = result["report"]
    assert kills >= 3
    assert report.restarts >= kills - 1
    assert report.finished and report.ok
    assert report.counts[S.DONE] == n
    per_job = _products_per_job(registry)
    assert len(per_job) == n and set(per_job.values()) == {1}  # every job done exactly once
    with registry.session(write=False) as s:
        rerun = s.execute(
            select(func.count()).where(Job.parent_id == root, Job.attempts > 1)
        ).scalar_one()
    assert rerun >= 1, f"{kills} kills, none re-ran a sub-job"
