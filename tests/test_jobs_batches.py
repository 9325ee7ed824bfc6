"""Batched claims (issue 13): the next batch claimed in the group commit's transaction, the
claim size capped by the fair share of ready jobs, a batch claimed ahead given back when the
pilot stops, and the one-statement group commit's release of dependants and super-jobs
(SQLite and PostgreSQL through the ``registry`` fixture)."""

from __future__ import annotations

from sqlalchemy import func, select

from surveydm.db.models.jobs import Job, JobAttempt
from surveydm.orchestration import Worker, load_task_modules, status_summary, submit
from surveydm.orchestration.queue import queue_outlook
from surveydm.orchestration.status import JobStatus as S

load_task_modules(["jobtasks"])


def _subjobs(registry, root: int) -> list[Job]:
    with registry.session(write=False) as s:
        return list(s.scalars(select(Job).where(Job.parent_id == root).order_by(Job.id)))


def _attempts(registry) -> dict[int, int]:
    with registry.session(write=False) as s:
        rows = s.execute(select(JobAttempt.job_id, func.count()).group_by(JobAttempt.job_id))
        return dict(rows.all())


def _prepared(registry, n: int) -> tuple[int, Worker]:
    """A super-job with ``n`` no-op sub-jobs created (its prolog run), and the worker."""
    root = submit(registry, "t_many", config={"n": n, "task": "t_noop"})
    w = Worker(registry, lease_seconds=30, poll_interval=0.01, max_batch=4)
    assert w.step() == 1
    return root, w


def test_stopped_pilot_gives_back_the_batch_claimed_ahead(registry):
    root, w = _prepared(registry, 12)
    w._batch = 2  # the next claims take 2, then 4 jobs
    w.run(max_steps=2)  # 2 jobs run; their group commit claimed 4 more, never started
    w.close()
    subs = _subjobs(registry, root)
    done = [j for j in subs if j.status == S.DONE]
    assert len(done) == 2 and all(j.attempts == 1 for j in done)
    rest = [j for j in subs if j.status != S.DONE]
    # released: queued again, the claim not counted, no lease, no attempt row
    assert all(j.status == S.QUEUED and j.attempts == 0 and j.token is None for j in rest)
    assert _attempts(registry) == {j.id: 1 for j in done} | {root: 1}
    w = Worker(registry, lease_seconds=30, poll_interval=0.01, max_batch=4)
    w.run(once=True)
    w.close()
    assert status_summary(registry, root).status == S.DONE
    attempts = _attempts(registry)
    assert all(attempts[j.id] == 1 for j in _subjobs(registry, root))  # each done once


def test_claim_size_is_the_fair_share_of_ready_jobs(registry):
    root, w = _prepared(registry, 6)
    with registry.session(write=False) as s:
        out = queue_outlook(s, cap=100, root_id=root)
        assert (out.ready, out.pilots) == (6, 0)
        assert queue_outlook(s, cap=4).ready == 4  # counted up to the cap
    w.pilots = 4
    w._batch = 4
    claims = w.claim()  # 6 ready jobs over 4 pilots: at most 2 for this one
    assert len(claims) == 2
    with registry.session(write=False) as s:
        out = queue_outlook(s, cap=100, root_id=root)
        assert (out.ready, out.pilots) == (4, 1)  # this pilot's claim is under way
    w2 = Worker(registry, lease_seconds=30, max_batch=4)
    w2._batch = 4
    assert len(w2.claim()) == 2  # ceil(4 ready / (1 pilot under way + itself))
    w.close()
    w2.close()


def test_group_commit_releases_dependants_and_wakes_the_super_job(registry):
    # a chain a -> b -> c plus independent jobs: each group commit releases the next link
    jobs = [
        {"task": "t_noop", "name": "a"},
        {"task": "t_noop", "name": "b", "after": ["a"]},
        {"task": "t_noop", "name": "c", "after": ["b"]},
        *[{"task": "t_noop", "name": n} for n in ("x", "y", "z")],
        {"task": "t_noop", "name": "d", "after": ["a", "x"]},
    ]
    root = submit(registry, "t_graph", config={"jobs": jobs})
    w = Worker(registry, lease_seconds=30, poll_interval=0.01, max_batch=8)
    assert w.step() == 1
    w._batch = 8
    assert w.step(ahead=True) == 4  # a, x, y, z in one group; b and d claimed ahead
    by_name = {j.name: j for j in _subjobs(registry, root)}
    assert {n for n, j in by_name.items() if j.status == S.DONE} == {"a", "x", "y", "z"}
    assert by_name["b"].status == S.RUNNING and by_name["d"].status == S.RUNNING
    assert by_name["c"].status == S.PENDING
    assert w.step(ahead=True) == 2  # b and d; c claimed ahead
    assert w.step(ahead=True) == 1  # c alone (its completion is not grouped)
    w.run(once=True)  # the super-job, woken once its last sub-job ended, runs its epilog
    w.close()
    summ = status_summary(registry, root)
    assert summ.status == S.DONE and summ.counts[S.DONE] == 7
    ended = {j.name: j.ended for j in _subjobs(registry, root)}
    assert ended["a"] <= ended["b"] <= ended["c"] and ended["x"] <= ended["d"]
    attempts = _attempts(registry)  # one attempt row per sub-job; prolog + epilog of the root
    assert attempts.pop(root) == 2 and set(attempts.values()) == {1} and len(attempts) == 7


def test_group_commit_keeps_a_dependant_pending_while_another_dependency_runs(registry):
    # f needs e and a; e is held by another pilot while a and x end in one group commit
    jobs = [
        {"task": "t_noop", "name": "e"},
        {"task": "t_noop", "name": "a"},
        {"task": "t_noop", "name": "x"},
        {"task": "t_noop", "name": "f", "after": ["a", "e"]},
    ]
    root = submit(registry, "t_graph", config={"jobs": jobs})
    w1 = Worker(registry, name="w1", lease_seconds=30, poll_interval=0.01, max_batch=8)
    assert w1.step() == 1  # the prolog creates the graph
    w2 = Worker(registry, name="w2", lease_seconds=30, poll_interval=0.01)
    held = w2.claim(limit=1)
    assert [c.name for c in held] == ["e"]
    w1._ahead = w1.claim(limit=8)  # (the fair share would split them over both pilots)
    assert w1.step() == 2  # a and x, group-committed while e runs
    by_name = {j.name: j for j in _subjobs(registry, root)}
    assert by_name["a"].status == S.DONE and by_name["x"].status == S.DONE
    assert by_name["e"].status == S.RUNNING and by_name["f"].status == S.PENDING
    w2._ahead = held
    assert w2.step() == 1  # e ends: f is released
    w2.close()
    assert {j.name: j.status for j in _subjobs(registry, root)}["f"] == S.QUEUED
    w1.run(once=True)
    w1.close()
    subs = {j.name: j for j in _subjobs(registry, root)}
    assert all(j.status == S.DONE for j in subs.values())
    assert subs["f"].started >= subs["e"].ended and subs["f"].started >= subs["a"].ended
    attempts = _attempts(registry)
    assert attempts.pop(root) == 2 and set(attempts.values()) == {1} and len(attempts) == 4
