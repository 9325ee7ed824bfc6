"""What an independent fault run found, mended (issue 10): every attempt is a record of its own
and survives a retry; a lost worker is the system's fault, bounded apart from the job's fault
budget; a super-job whose tree partly failed does not end plain ``done``; jobs are found by
their key, and a second job for the same key is a named error (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest
from sqlalchemy import select

from surveydm.db.models.jobs import Job, JobAttempt, Tag
from surveydm.orchestration import (
    DuplicateJobError,
    JobManager,
    Worker,
    job_key,
    load_task_modules,
    retry,
    run_local,
    status_summary,
    submit,
)
from surveydm.orchestration import queue as job_queue
from surveydm.orchestration.status import JobStatus as S

load_task_modules(["jobtasks"])

FORK = mp.get_context("fork")
LEASE = 0.6


def _pilot(url: str) -> None:
    load_task_modules(["jobtasks"])
    Worker(url, lease_seconds=LEASE, poll_interval=0.02).run()


def _job(registry, job_id: int) -> Job:
    with registry.session(write=False) as s:
        return s.get(Job, job_id)


def _history(registry, job_id: int) -> list[tuple[int, str]]:
    with registry.session(write=False) as s:
        rows = s.scalars(
            select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.id)
        )
        return [(a.attempt, a.outcome) for a in rows]


def _kill_while_running(registry, job_id: int, times: int) -> list[int]:
    """Start a pilot, wait until it runs ``job_id``, SIGKILL it; ``times`` times. Returns the
    pids killed (each pilot's first sweep re-queues the job its predecessor held)."""
    killed = []
    for _ in range(times):
        p = FORK.Process(target=_pilot, args=(registry.url,), daemon=True)
        p.start()
        deadline = time.monotonic() + 30
        while True:
            j = _job(registry, job_id)
            if j.status == S.RUNNING and j.pid == p.pid:
                break
            assert j.status in (S.QUEUED, S.RUNNING), j.status
            assert time.monotonic() < deadline, "the pilot never ran the job"
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        killed.append(p.pid)
    return killed


def test_lost_workers_do_not_spend_the_fault_budget(registry):
    # two claims allowed for faults; three workers SIGKILLed while running it
    job = submit(registry, "t_record", config={"sleep": 30, "sleep_attempts": 3}, max_attempts=2)
    killed = _kill_while_running(registry, job, 3)
    report = run_local(registry.url, job, processes=0, lease_seconds=LEASE, poll_interval=0.05)
    assert report.finished and report.ok
    j = _job(registry, job)
    assert j.status == S.DONE and j.attempts == 4 and j.lost == 3
    assert j.output["attempt"] == 4 and j.output["pid"] not in killed
    assert _history(registry, job) == [(1, "lost"), (2, "lost"), (3, "lost"), (4, "ok")]
    with registry.session(write=False) as s:
        faults = s.scalars(
            select(JobAttempt.fault).where(JobAttempt.job_id == job, JobAttempt.outcome == "lost")
        ).all()
    assert all("lease expired" in f for f in faults)
    assert all(f":{pid} " in f for pid, f in zip(killed, faults, strict=True))  # host:pid


def test_a_job_that_keeps_killing_its_workers_is_stopped(registry):
    job = submit(registry, "t_record", config={"sleep": 30, "always_sleep": True}, max_lost=2)
    _kill_while_running(registry, job, 2)
    w = Worker(registry, lease_seconds=LEASE, poll_interval=0.02)
    deadline = time.monotonic() + 20
    while _job(registry, job).status != S.FAILED and time.monotonic() < deadline:
        w.sweep(full=True)
        time.sleep(0.1)
    w.close()
    j = _job(registry, job)
    assert j.status == S.FAILED and j.lost == 2 and j.attempts == 2
    assert "2 workers lost with this job: given up" in j.fault
    assert _history(registry, job) == [(1, "lost"), (2, "lost")]
    stats = {t.task: t for t in JobManager(registry).stats()}
    assert stats["t_record"].lost == 2 and stats["t_record"].failed == 1


def test_retry_keeps_the_attempt_history(registry):
    job = submit(registry, "t_flaky", config={"faults": 99})
    w = Worker(registry, lease_seconds=5, poll_interval=0.02)
    deadline = time.monotonic() + 20
    while _job(registry, job).status != S.FAILED and time.monotonic() < deadline:
        if not w.step():
            time.sleep(0.05)
    assert _history(registry, job) == [(1, "fault"), (2, "fault"), (3, "fault")]
    assert retry(registry, job) == 1
    j = _job(registry, job)
    assert j.status == S.QUEUED and j.attempts == 0 and j.lost == 0 and j.fault is None
    assert len(_history(registry, job)) == 3  # the budget starts afresh, the history stays
    with registry.session(write=False) as s:
        tag = s.scalars(select(Tag).where(Tag.job_id == job, Tag.name == "retry")).one()
    assert "ended failed (3 attempts, 0 lost workers)" in tag.value
    assert w.step() == 1
    w.close()
    assert _history(registry, job)[-1] == (1, "fault")  # the first attempt of the new budget
    detail = JobManager(registry).detail(job)
    assert [a.outcome for a in detail.attempts] == ["fault"] * 4


def test_abort_ends_the_running_attempt(registry):
    job = submit(registry, "t_record", config={"sleep": 30, "always_sleep": True})
    p = FORK.Process(target=_pilot, args=(registry.url,), daemon=True)
    p.start()
    try:
        deadline = time.monotonic() + 20
        while _job(registry, job).status != S.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        running = JobManager(registry).detail(job).attempts
        assert [(a.attempt, a.outcome, a.pid) for a in running] == [(1, None, p.pid)]
        JobManager(registry).abort(job)
        assert _history(registry, job) == [(1, "aborted")]
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join()


def _graph(*jobs):
    return {"jobs": [dict(j) for j in jobs]}


def test_partly_failed_super_job_is_done_partial_and_its_dependants_run(registry):
    root = submit(
        registry,
        "t_graph",
        config=_graph(
            {"task": "t_mixed", "name": "mixed"},  # a super-job: one quality failure inside
            {"task": "t_record", "name": "after", "after": ["mixed"]},
            {"task": "t_many", "name": "fine", "config": {"n": 2}},
        ),
    )
    w = Worker(registry, lease_seconds=5, poll_interval=0.02)
    w.run(once=True)
    w.close()
    manager = JobManager(registry)
    with registry.session(write=False) as s:
        subs = {j.name: j for j in s.scalars(select(Job).where(Job.parent_id == root))}
    assert subs["mixed"].status == S.DONE_PARTIAL
    assert subs["fine"].status == S.DONE  # all its sub-jobs done: plain done
    assert subs["after"].status == S.DONE  # done_partial satisfies a dependency
    assert _job(registry, root).status == S.DONE_PARTIAL  # partial all the way up
    assert manager.summary(subs["mixed"].id).qc == "red"  # a quality failure inside
    assert manager.summary(subs["fine"].id).qc == "green"
    root_summary = status_summary(registry, root)
    assert root_summary.qc == "red" and root_summary.counts[S.DONE_PARTIAL] == 1
    # the listing derives the same colour as the summary, and filters by it
    detail = manager.detail(root)
    colours = {r.job.name: r.result.colour for r in detail.children}
    assert colours == {"mixed": "yellow", "after": "green", "fine": "green"}  # own status


def test_keys_identify_jobs(registry, monkeypatch):
    manager = JobManager(registry)
    key = job_key(obs_set="20261120_001", production=3)
    assert key == "obs_set=20261120_001;production=3"
    first = manager.submit("t_record", key=key)
    with pytest.raises(DuplicateJobError) as err:
        manager.submit("t_record", key=key, name="again")
    assert err.value.job_id == first and manager.find("t_record", key) == first
    other = manager.submit("t_noop", key=key)  # keys are unique per task type
    assert other != first
    assert manager.submit("t_record") != manager.submit("t_record")  # no key: no constraint
    # a concurrent submission that passes the look-up meets the unique index: same error
    real, calls = job_queue.find_by_key, []

    def miss_once(*args):  # the first look-up (in submit) misses, as under a race
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    monkeypatch.setattr(job_queue, "find_by_key", miss_once)
    with pytest.raises(DuplicateJobError) as err:
        manager.submit("t_noop", key=key)
    assert err.value.job_id == other
    with pytest.raises(ValueError, match="';'"):
        job_key(obs_set="a;b")


def test_a_duplicate_subjob_key_is_a_fault_of_the_step(registry):
    root = submit(
        registry,
        "t_graph",
        config=_graph(
            {"task": "t_record", "name": "a", "key": "ccd=1"},
            {"task": "t_record", "name": "b", "key": "ccd=1"},
        ),
        max_attempts=1,
    )
    w = Worker(registry, lease_seconds=5)
    w.step()
    w.close()
    j = _job(registry, root)
    assert j.status == S.FAILED and "IntegrityError" in j.fault
    with registry.session(write=False) as s:
        assert s.scalars(select(Job).where(Job.parent_id == root)).all() == []
    assert _history(registry, root) == [(1, "fault")]
