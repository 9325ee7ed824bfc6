"""Task types used by the job-system tests and benchmark (loaded with ``load_task_modules``).

Tasks register their effect as ``product`` rows through ``ctx.on_commit`` so tests can check
that every job's effect exists exactly once, whatever the crashes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from surveydm.db.models.production import Product
from surveydm.orchestration import JobContext, QualityFailure, Task, register_task


def _record(ctx: JobContext, kind: str, extra: dict[str, Any] | None = None) -> None:
    data = {"job": ctx.job_id, "name": ctx.name, **(extra or {})}

    def add(session: Any) -> None:
        session.add(Product(product_type=kind, data_id=data, job_id=ctx.job_id))

    ctx.on_commit(add)


@register_task
class Noop(Task):
    """Does nothing (benchmarks)."""

    name = "t_noop"


@register_task
class Record(Task):
    """Registers one product; optionally sleeps first (on the first ``sleep_attempts``
    attempts, default 1, or always)."""

    name = "t_record"
    max_attempts = 10
    retry_backoff = 0.05

    def run(self, ctx: JobContext) -> dict[str, Any]:
        sleep = float(ctx.config.get("sleep", 0.0))
        sleepy = ctx.attempt <= int(ctx.config.get("sleep_attempts", 1))
        if sleep and (sleepy or ctx.config.get("always_sleep")):
            deadline = time.monotonic() + sleep
            while time.monotonic() < deadline and not ctx.cancelled:
                time.sleep(0.02)
        _record(ctx, "t_record")
        ctx.log(f"recorded by pid {os.getpid()} attempt {ctx.attempt}")
        return {"pid": os.getpid(), "attempt": ctx.attempt}


@register_task
class Flaky(Task):
    """Faults on its first ``config["faults"]`` attempts, then succeeds."""

    name = "t_flaky"
    max_attempts = 3
    retry_backoff = 0.1

    def run(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.attempt <= int(ctx.config.get("faults", 1)):
            raise RuntimeError(f"transient trouble on attempt {ctx.attempt}")
        _record(ctx, "t_flaky")
        return {"attempt": ctx.attempt}


@register_task
class BadData(Task):
    """Measures a QC value outside its limits and raises QualityFailure."""

    name = "t_bad"
    max_attempts = 3

    def run(self, ctx: JobContext) -> None:
        result = ctx.qc("noise", 12.5, max=10.0, warn_max=8.0, units="ADU", description="rms")
        if result == "fail":
            raise QualityFailure("noise 12.5 ADU above 10")


@register_task
class Pipeline(Task):
    """Super-job: prolog creates a diamond a -> (b, c) -> d of ``t_record`` jobs plus
    ``config["extra"]`` independent ones; the epilog adds one ``t_record`` wave once, then
    summarises the sub-jobs in the output."""

    name = "t_pipeline"

    def prolog(self, ctx: JobContext) -> None:
        sleep = ctx.config.get("sleep", 0.0)
        a = ctx.add_subjob("t_record", name="a", config={"sleep": sleep})
        b = ctx.add_subjob("t_record", name="b", after=[a])
        c = ctx.add_subjob("t_record", name="c", after=[a])
        ctx.add_subjob("t_record", name="d", after=[b, c])
        for i in range(int(ctx.config.get("extra", 0))):
            ctx.add_subjob("t_record", name=f"x{i}")

    def run(self, ctx: JobContext) -> dict[str, Any]:
        return {"prolog": "done"}

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        if not any(s.name == "wave2" for s in subs):
            ctx.add_subjob("t_record", name="wave2")
            return
        ctx.output = {**(ctx.output or {}), "subjobs": {s.name: s.status for s in subs}}
        _record(ctx, "t_pipeline")


@register_task
class Mixed(Task):
    """Super-job with a quality failure upstream: bad -> after_bad (skipped) -> after_after
    (skipped), plus an independent record job; the epilog stores the statuses."""

    name = "t_mixed"

    def prolog(self, ctx: JobContext) -> None:
        bad = ctx.add_subjob("t_bad", name="bad")
        ab = ctx.add_subjob("t_record", name="after_bad", after=[bad])
        ctx.add_subjob("t_record", name="after_after", after=[ab])
        ctx.add_subjob("t_record", name="independent")

    def epilog(self, ctx: JobContext) -> None:
        ctx.output = {s.name: s.status for s in ctx.subjobs()}


@register_task
class Many(Task):
    """Super-job creating ``config["n"]`` ``config["task"]`` sub-jobs (default ``t_record``)."""

    name = "t_many"

    def prolog(self, ctx: JobContext) -> None:
        task = ctx.config.get("task", "t_record")
        sub_config = ctx.config.get("sub_config", {})
        for i in range(int(ctx.config["n"])):
            ctx.add_subjob(task, name=f"n{i}", config=sub_config)


@register_task
class Graph(Task):
    """Super-job building the graph in ``config["jobs"]``: a list of
    ``{"task", "name", "config", "after": [names], "key"}``."""

    name = "t_graph"

    def prolog(self, ctx: JobContext) -> None:
        refs = {}
        for spec in ctx.config["jobs"]:
            refs[spec["name"]] = ctx.add_subjob(
                spec["task"],
                name=spec["name"],
                config=spec.get("config", {}),
                after=[refs[a] for a in spec.get("after", [])],
                key=spec.get("key"),
            )

    def epilog(self, ctx: JobContext) -> None:
        ctx.output = {s.name: s.status for s in ctx.subjobs()}


@register_task
class CommitFails(Task):
    """Its ``on_commit`` work raises on the first attempt (a constraint violation, say)."""

    name = "t_commit_fails"
    max_attempts = 3
    retry_backoff = 0.0

    def run(self, ctx: JobContext) -> None:
        attempt = ctx.attempt

        def register(session: Any) -> None:
            if attempt == 1:
                raise RuntimeError("duplicate product")
            session.add(Product(product_type="t_commit_fails", data_id={}, job_id=ctx.job_id))

        ctx.on_commit(register)
