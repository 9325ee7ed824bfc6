"""Idle pilots: woken by PostgreSQL NOTIFY when jobs become ready (at commit, never for a
rolled-back transaction), exponential back-off polling on SQLite."""

from __future__ import annotations

import threading
import time

import pytest

from surveydm.db import Registry
from surveydm.orchestration import Worker, load_task_modules, status_summary, submit
from surveydm.orchestration.status import JobStatus as S
from surveydm.orchestration.wakeup import IdleWait, announce_ready

load_task_modules(["jobtasks"])


def test_notify_on_commit_only(registry: Registry) -> None:
    """A listener wakes when a submit commits, not for one rolled back; SQLite backs off."""
    idle = IdleWait(registry.url, min_wait=0.01, max_wait=0.16)
    try:
        if registry.dialect != "postgresql":
            t0 = time.perf_counter()
            assert [idle.wait() for _ in range(5)] == [False] * 5
            # 0.01 + 0.02 + 0.04 + 0.08 + 0.16 (the ceiling) seconds
            assert 0.29 < time.perf_counter() - t0 < 2.0
            idle.reset()
            t0 = time.perf_counter()
            idle.wait()
            assert time.perf_counter() - t0 < 0.1  # back to min_wait after work was found
            return
        assert idle.wait() is False  # opens the listening connection; nothing to hear
        assert idle.listening
        with pytest.raises(RuntimeError), registry.session() as s:
            announce_ready(s)
            raise RuntimeError("roll back")
        assert idle.wait() is False
        submit(registry, "t_noop")
        t0 = time.perf_counter()
        assert idle.wait() is True
        assert time.perf_counter() - t0 < 0.15
        assert idle.wait() is False  # one notification per committed transaction
    finally:
        idle.close()


def test_idle_pilot_wakes_for_new_work(registry: Registry) -> None:
    """An idle pilot picks up jobs submitted while it waits, and dependants that become ready:
    on PostgreSQL without waiting out its (long) poll interval."""
    poll = 30.0 if registry.dialect == "postgresql" else 0.2
    w = Worker(registry, lease_seconds=60, poll_interval=poll, min_poll_interval=0.01)
    w._last_sweep = time.monotonic()  # no sweep is due: only a wake-up can find the jobs
    w.idle_sweep_interval = 3600.0
    stop = threading.Event()
    th = threading.Thread(target=w.run, kwargs={"stop": stop}, daemon=True)
    th.start()
    try:
        time.sleep(0.5)  # the pilot is idle, waiting
        root = submit(registry, "t_pipeline")
        deadline = time.monotonic() + 20
        while status_summary(registry, root).status not in (S.DONE, S.FAILED):
            assert time.monotonic() < deadline, status_summary(registry, root).counts
            time.sleep(0.05)
        assert status_summary(registry, root).status == S.DONE
        if registry.dialect == "postgresql":
            assert w._idle is not None and w._idle.notifications >= 1
    finally:
        stop.set()
        if registry.dialect == "postgresql":
            submit(registry, "t_noop")  # wake it so that it sees the stop
        th.join(timeout=10)
        w.close()
    assert not th.is_alive()
