"""Job system: dependencies, sub-jobs from prolog/epilog, faults vs quality failures, abort,
retry, derived status (SQLite and PostgreSQL through the ``registry`` fixture)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from surveydm.db.models.jobs import Dependency, Job, JobAttempt, QualityControl, Tag
from surveydm.db.models.production import Product
from surveydm.errors import SurveydmError
from surveydm.orchestration import (
    JobContext,
    JobNotFoundError,
    JobStateError,
    QualityFailure,
    SubJobRef,
    Task,
    TaskDefinitionError,
    UnknownTaskError,
    Worker,
    abort,
    load_task_modules,
    qc_result,
    register_task,
    retry,
    run_local,
    status_summary,
    submit,
    task_stats,
)
from surveydm.orchestration.status import ACTIVE, FINAL, Phase
from surveydm.orchestration.status import JobStatus as S

load_task_modules(["jobtasks"])


def drain(registry, root=None, **kw) -> Worker:
    """Run every ready job in this process until nothing is left (no fork)."""
    w = Worker(registry, root_id=root, lease_seconds=5, poll_interval=0.02, **kw)
    w.run(once=True)
    w.close()
    return w


def jobs_by_name(registry, parent_id: int) -> dict[str, Job]:
    with registry.session(write=False) as s:
        return {j.name: j for j in s.scalars(select(Job).where(Job.parent_id == parent_id))}


def products(registry, kind: str | None = None) -> list[Product]:
    q = select(Product).order_by(Product.id)
    if kind:
        q = q.where(Product.product_type == kind)
    with registry.session(write=False) as s:
        return list(s.scalars(q))


def test_dependency_order_and_epilog_subjobs(registry):
    root = submit(registry, "t_pipeline", config={"extra": 2})
    drain(registry)
    subs = jobs_by_name(registry, root)
    assert {n: j.status for n, j in subs.items()} == dict.fromkeys(
        ["a", "b", "c", "d", "x0", "x1", "wave2"], S.DONE
    )
    order = {p.data_id["name"]: p.id for p in products(registry, "t_record")}
    assert order["a"] < order["b"] < order["d"]
    assert order["a"] < order["c"] < order["d"]
    # wave2 was created by the epilog, i.e. after every prolog sub-job ended.
    assert order["wave2"] > max(order[n] for n in ("a", "b", "c", "d", "x0", "x1"))
    with registry.session(write=False) as s:
        r = s.get(Job, root)
        deps = s.execute(select(Dependency.parent_id, Dependency.child_id)).all()
    assert r.status == S.DONE and r.phase == Phase.EPILOG
    assert r.output["prolog"] == "done"  # run's output kept through the epilogs
    assert r.output["subjobs"]["wave2"] == S.DONE
    assert set(deps) == {
        (subs["a"].id, subs["b"].id),
        (subs["a"].id, subs["c"].id),
        (subs["b"].id, subs["d"].id),
        (subs["c"].id, subs["d"].id),
    }
    # the super-job's own product was registered once, by its final epilog
    assert [p.job_id for p in products(registry, "t_pipeline")] == [root]
    assert all(j.root_id == root for j in subs.values())
    summ = status_summary(registry, root)
    assert summ.state == S.DONE and summ.total == 7 and summ.counts[S.DONE] == 7
    assert summ.done_fraction == 1.0 and summ.qc == "green"


def test_pending_jobs_wait_for_dependencies(registry):
    root = submit(registry, "t_pipeline")
    w = Worker(registry, lease_seconds=5)
    assert w.step() == 1  # the root's prolog + run
    subs = jobs_by_name(registry, root)
    assert subs["a"].status == S.QUEUED
    assert subs["b"].status == subs["c"].status == subs["d"].status == S.PENDING
    with registry.session(write=False) as s:
        assert s.get(Job, root).status == S.WAITING
    summ = status_summary(registry, root)
    assert summ.state == S.RUNNING and summ.counts[S.PENDING] == 3 and summ.done_fraction == 0
    w.step()  # a
    subs = jobs_by_name(registry, root)
    assert subs["a"].status == S.DONE
    assert subs["b"].status == subs["c"].status == S.QUEUED and subs["d"].status == S.PENDING
    w.close()


def test_fault_is_retried_with_exponential_backoff(registry):
    job = submit(registry, "t_flaky", config={"faults": 2})
    w = Worker(registry, lease_seconds=5)
    assert w.step() == 1
    with registry.session(write=False) as s:
        j = s.get(Job, job)
        assert j.status == S.QUEUED and j.attempts == 1 and "attempt 1" in j.fault
        first_delay = j.not_before - j.queued
    assert first_delay == timedelta(seconds=0.1)  # Flaky.retry_backoff
    time.sleep(0.15)
    assert w.step() == 1
    with registry.session(write=False) as s:
        j = s.get(Job, job)
        assert j.status == S.QUEUED and j.attempts == 2
        assert j.not_before - j.queued == timedelta(seconds=0.2)  # doubled
    assert w.step() == 0  # not ready during the back-off
    time.sleep(0.25)
    assert w.step() == 1
    w.close()
    with registry.session(write=False) as s:
        j = s.get(Job, job)
        tbs = s.scalars(select(Tag).where(Tag.job_id == job, Tag.name == "traceback")).all()
    assert j.status == S.DONE and j.attempts == 3 and j.output == {"attempt": 3}
    assert "attempt 2" in j.fault  # the last fault stays on record
    assert len(tbs) == 2 and "RuntimeError: transient trouble" in tbs[0].value
    assert [p.job_id for p in products(registry, "t_flaky")] == [job]


def attempts(registry, job_id: int) -> list[JobAttempt]:
    with registry.session(write=False) as s:
        return list(
            s.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.id))
        )


def _graph(*jobs):
    return {"jobs": [dict(j) for j in jobs]}


def test_fault_exhausted_fails_and_skips_dependants(registry):
    root = submit(
        registry,
        "t_graph",
        config=_graph(
            {"task": "t_flaky", "name": "flaky", "config": {"faults": 99}},
            {"task": "t_record", "name": "next", "after": ["flaky"]},
            {"task": "t_record", "name": "free"},
        ),
    )
    w = Worker(registry, lease_seconds=5, poll_interval=0.02)
    deadline = time.monotonic() + 30
    while status_summary(registry, root).status not in FINAL and time.monotonic() < deadline:
        if not w.step():
            time.sleep(0.05)
    w.close()
    subs = jobs_by_name(registry, root)
    assert subs["flaky"].status == S.FAILED and subs["flaky"].attempts == 3
    assert subs["flaky"].fault.startswith("RuntimeError")
    assert subs["next"].status == S.SKIPPED
    assert subs["next"].reason == f"dependency {subs['flaky'].id} ended failed"
    assert subs["free"].status == S.DONE
    with registry.session(write=False) as s:
        assert s.get(Job, root).output == {"flaky": "failed", "next": "skipped", "free": "done"}
        n_tb = s.execute(
            select(func.count()).where(Tag.job_id == subs["flaky"].id, Tag.name == "traceback")
        ).scalar_one()
    assert n_tb == 3
    # part of the tree failed: the super-job says so in its status and its colour
    summ = status_summary(registry, root)
    assert summ.failed == 1 and summ.counts[S.SKIPPED] == 1
    assert summ.status == S.DONE_PARTIAL and summ.qc == "red"
    # every attempt is a record of its own
    assert [(a.attempt, a.outcome) for a in attempts(registry, subs["flaky"].id)] == [
        (1, "fault"),
        (2, "fault"),
        (3, "fault"),
    ]


def test_quality_failure_not_retried_and_dependants_skipped(registry):
    root = submit(registry, "t_mixed")
    drain(registry)
    subs = jobs_by_name(registry, root)
    bad = subs["bad"]
    assert bad.status == S.FAILED_QUALITY and bad.attempts == 1  # never retried
    assert bad.quality == "noise 12.5 ADU above 10" and bad.fault is None
    assert subs["after_bad"].status == S.SKIPPED
    assert subs["after_bad"].reason == f"dependency {bad.id} ended failed_quality"
    assert subs["after_after"].status == S.SKIPPED
    assert subs["after_after"].reason == f"dependency {subs['after_bad'].id} ended skipped"
    assert subs["independent"].status == S.DONE
    with registry.session(write=False) as s:
        qc = s.scalars(select(QualityControl).where(QualityControl.job_id == bad.id)).one()
        # the epilog ran; part of the tree failed, so the super-job is not plain done
        assert s.get(Job, root).status == S.DONE_PARTIAL
    assert (qc.check_name, qc.value, qc.max_value, qc.units, qc.result, qc.qc_pass) == (
        "noise",
        12.5,
        10.0,
        "ADU",
        "fail",
        False,
    )
    summ = status_summary(registry, root)
    assert summ.qc == "red" and summ.counts[S.FAILED_QUALITY] == 1
    assert summ.counts[S.SKIPPED] == 2 and summ.done_fraction == 0.25
    assert [p.data_id["name"] for p in products(registry, "t_record")] == ["independent"]


def test_abort_tree_then_retry(registry):
    root = submit(registry, "t_many", config={"n": 4})
    w = Worker(registry, lease_seconds=5, poll_interval=0.02)
    w.step()  # prolog creates 4 sub-jobs
    assert abort(registry, root) == 5
    summ = status_summary(registry, root)
    assert summ.status == S.ABORTED and summ.counts[S.ABORTED] == 4
    assert w.step() == 0  # nothing left to claim
    with pytest.raises(JobStateError):
        abort(registry, root)
    assert retry(registry, root) == 5
    w.run(once=True)
    w.close()
    summ = status_summary(registry, root)
    assert summ.status == S.DONE and summ.counts[S.DONE] == 4
    assert len(products(registry, "t_record")) == 4


def test_abort_running_job_discards_its_result(registry):
    job = submit(registry, "t_record", config={"sleep": 30, "always_sleep": True})
    w = Worker(registry, lease_seconds=0.6, poll_interval=0.02)
    t = threading.Thread(target=w.step)
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with registry.session(write=False) as s:
            if s.get(Job, job).status == S.RUNNING:
                break
        time.sleep(0.02)
    w.start_heartbeat()  # step() alone has no heartbeat; the run loop starts it
    assert abort(registry, job) == 1
    t.join(timeout=10)  # the heartbeat cancels the task, which stops sleeping early
    w.close()
    assert not t.is_alive()
    assert w.report.lost == 1
    with registry.session(write=False) as s:
        j = s.get(Job, job)
    assert j.status == S.ABORTED and j.reason == "aborted by operator" and j.output is None
    assert products(registry, "t_record") == []


def test_retry_failed_subjobs_reruns_epilog(registry):
    root = submit(
        registry,
        "t_graph",
        config=_graph(
            {"task": "t_bad", "name": "bad"},
            {"task": "t_record", "name": "after", "after": ["bad"]},
            {"task": "t_record", "name": "ok"},
        ),
    )
    drain(registry)
    assert status_summary(registry, root).counts[S.FAILED_QUALITY] == 1
    # the operator fixed the data: make the bad task succeed by swapping its task type
    subs = jobs_by_name(registry, root)
    with registry.session() as s:
        s.get(Job, subs["bad"].id).task = "t_record"
    assert retry(registry, root) == 2  # bad + skipped dependant
    with registry.session(write=False) as s:
        r = s.get(Job, root)
        assert r.status == S.WAITING and r.phase == Phase.EPILOG
        assert s.get(Job, subs["after"].id).status == S.PENDING
    drain(registry)
    with registry.session(write=False) as s:
        assert s.get(Job, root).output == {"bad": "done", "after": "done", "ok": "done"}
    with pytest.raises(JobStateError):
        retry(registry, root)


def test_unknown_job_and_task_errors(registry):
    with pytest.raises(JobNotFoundError):
        status_summary(registry, 999_999)
    with pytest.raises(JobNotFoundError):
        abort(registry, 999_999)
    with pytest.raises(UnknownTaskError, match="no_such_task"):
        submit(registry, "no_such_task")
    with pytest.raises(ValueError, match="config must be"):
        submit(registry, "t_noop", config=[1, 2])  # type: ignore[arg-type]
    # queued for workers that know it: not claimed by ours, not lost either
    job = submit(registry, "someone_elses", check_task=False)
    assert drain(registry).report.executed == 0
    with registry.session(write=False) as s:
        assert s.get(Job, job).status == S.QUEUED


def test_stats_account_for_past_jobs(registry):
    submit(registry, "t_flaky", config={"faults": 1})
    submit(registry, "t_bad")
    submit(registry, "t_record")
    w = Worker(registry, lease_seconds=5, poll_interval=0.02)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        w.step()
        with registry.session(write=False) as s:
            if not s.execute(select(func.count()).where(Job.status.in_(ACTIVE))).scalar_one():
                break
        time.sleep(0.05)
    w.close()
    stats = {t.task: t for t in task_stats(registry)}
    assert set(stats) == {"t_flaky", "t_bad", "t_record"}
    assert stats["t_flaky"].done == 1 and stats["t_flaky"].faults == 1  # had a fault
    assert stats["t_bad"].failed_quality == 1 and stats["t_bad"].done == 0
    assert stats["t_record"].count == 1 and stats["t_record"].wall_time_total > 0
    assert stats["t_record"].wall_time_mean == pytest.approx(stats["t_record"].wall_time_total)


def test_run_local_processes_and_progress(registry):
    root = submit(registry, "t_many", config={"n": 30})
    seen = []
    report = run_local(
        registry.url, root, processes=2, lease_seconds=5, poll_interval=0.02, progress=seen.append
    )
    assert report.finished and report.ok
    assert report.summary.status == S.DONE and report.counts[S.DONE] == 30
    assert seen and seen[-1].done_fraction == 1.0
    recs = products(registry, "t_record")
    assert len(recs) == 30 and len({p.job_id for p in recs}) == 30


def test_run_local_gives_up_when_pilots_fail_as_they_start(registry):
    """A broken setup (here: settings the pilots reject) makes every pilot exit with an
    error at once; run_local must say so instead of restarting pilots forever."""
    root = submit(registry, "t_record")
    with pytest.raises(SurveydmError, match="exit with an error as they start"):
        run_local(registry.url, root, processes=1, env={"SURVEYDM_LEASE_SECONDS": "-5"})
    with registry.session(write=False) as s:
        assert s.get(Job, root).status == S.QUEUED  # nothing lost: the job waits


def test_qc_result_and_context_validation(registry):
    assert qc_result(5, min=0, max=10) == "pass"
    assert qc_result(9, min=0, max=10, warn_max=8) == "warn"
    assert qc_result(11, max=10) == "fail"
    assert qc_result(float("nan"), max=10) == "fail"
    assert qc_result(None) == "pass"
    ctx = JobContext(
        job_id=1, task="t", name="n", config={}, input={}, production_id=None, registry=registry
    )
    a = ctx.add_subjob("t_noop", name="a")
    with pytest.raises(ValueError, match="not a sub-job"):
        ctx.add_subjob("t_noop", after=[SubJobRef(5, "t_noop", "zz")])
    with pytest.raises(UnknownTaskError):
        ctx.add_subjob("nope")
    assert ctx.add_subjob("t_noop", after=[a]).index == 1
    assert ctx.qc("x", 3, min=4, units="px") == "fail"


def test_register_task_validation():
    with pytest.raises(TaskDefinitionError):

        @register_task
        class NoName(Task):
            pass

    with pytest.raises(TaskDefinitionError, match="taken"):

        @register_task
        class Clash(Task):
            name = "t_noop"

    with pytest.raises(QualityFailure):
        raise QualityFailure("x")


def test_nested_super_jobs_summary_and_abort(registry):
    root = submit(
        registry,
        "t_graph",
        config=_graph(
            {"task": "t_many", "name": "inner", "config": {"n": 3}},
            {"task": "t_bad", "name": "bad", "after": ["inner"]},
        ),
    )
    w = Worker(registry, lease_seconds=5)
    w.step()  # root prolog: inner + bad
    w.step()  # inner prolog: 3 records
    inner = jobs_by_name(registry, root)["inner"].id
    summ = status_summary(registry, inner)  # inner job: recursive CTE over parent_id
    assert summ.total == 3 and summ.counts[S.QUEUED] == 3 and summ.state == S.RUNNING
    assert status_summary(registry, root).total == 5  # whole tree: inner, bad, 3 records
    w.run(once=True)
    w.close()
    summ = status_summary(registry, inner)
    assert summ.status == S.DONE and summ.counts[S.DONE] == 3 and summ.qc == "green"
    root_summ = status_summary(registry, root)
    assert root_summ.counts[S.DONE] == 4 and root_summ.counts[S.FAILED_QUALITY] == 1
    assert root_summ.qc == "red" and root_summ.status == S.DONE_PARTIAL
    # retrying the quality failure re-opens the root (its epilog runs again), not `inner`
    assert retry(registry, root) == 1
    with registry.session(write=False) as s:
        assert s.get(Job, root).status == S.WAITING
        assert s.get(Job, inner).status == S.DONE
    assert abort(registry, root) == 2  # the root and the re-queued bad job


def test_group_commit_isolates_a_failing_on_commit(registry):
    root = submit(
        registry,
        "t_graph",
        config=_graph(
            *[{"task": "t_record", "name": f"r{i}"} for i in range(3)],
            {"task": "t_commit_fails", "name": "culprit"},
            *[{"task": "t_record", "name": f"s{i}"} for i in range(3)],
        ),
    )
    w = Worker(registry, lease_seconds=5)
    w.step()  # the root's prolog
    w._batch = 8  # claim all 7 sub-jobs in one batch: their completions are group-committed
    assert w.step() == 7
    subs = jobs_by_name(registry, root)
    assert subs["culprit"].status == S.QUEUED and "duplicate product" in subs["culprit"].fault
    assert all(subs[n].status == S.DONE for n in subs if n != "culprit")
    per_job = {p.job_id for p in products(registry, "t_record")}
    assert len(products(registry, "t_record")) == 6 and len(per_job) == 6
    w.run(once=True)
    w.close()
    assert [p.job_id for p in products(registry, "t_commit_fails")] == [subs["culprit"].id]
    assert status_summary(registry, root).status == S.DONE


def test_large_prolog_bulk_insert_tree_graph(registry):
    n = 2500  # above store.COPY_THRESHOLD: PostgreSQL takes the COPY path
    jobs = [
        {"task": "t_noop", "name": f"n{i}", "after": [f"n{(i - 1) // 2}"] if i else []}
        for i in range(n)
    ]
    root = submit(registry, "t_graph", config={"jobs": jobs})
    w = Worker(registry, lease_seconds=30, poll_interval=0.01)
    w.step()
    summ = status_summary(registry, root)
    assert summ.total == n and summ.counts[S.QUEUED] == 1 and summ.counts[S.PENDING] == n - 1
    subs = jobs_by_name(registry, root)
    with registry.session(write=False) as s:
        deps = set(s.execute(select(Dependency.parent_id, Dependency.child_id)).all())
        supers = set(s.scalars(select(Dependency.super_id)))
    assert len(deps) == n - 1 and supers == {root}
    assert (subs["n1"].id, subs["n3"].id) in deps and (subs["n0"].id, subs["n2"].id) in deps
    assert {j.root_id for j in subs.values()} == {root}
    w.run(once=True)
    w.close()
    summ = status_summary(registry, root)
    assert summ.status == S.DONE and summ.counts[S.DONE] == n
    with registry.session(write=False) as s:
        order = dict(s.execute(select(Job.name, Job.ended).where(Job.parent_id == root)).all())
    assert all(order[f"n{(i - 1) // 2}"] <= order[f"n{i}"] for i in range(1, n))
