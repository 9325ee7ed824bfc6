"""The main job: ``surveydm night BUFFER_DIR`` = transfer -> register -> nightly, run by local
workers, ending with a summary of the night (seed 000 sections 2, 3 and 6.1).

Re-running on the same buffer transfers nothing new, submits no second register job for an
observation set already submitted in this production, and so duplicates nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from surveydm.archive import Archive
from surveydm.config import Settings, settings_environment
from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.db.models.jobs import Job
from surveydm.db.models.raw import Image, Mosaic, ObsSet
from surveydm.orchestration import (
    DuplicateJobError,
    JobManager,
    job_key,
    load_task_modules,
    run_local,
)
from surveydm.orchestration.qc import QCResult
from surveydm.pipelines import TASK_MODULES
from surveydm.pipelines.productions import get_or_create_production
from surveydm.pipelines.transfer import DEFAULT_SETTLE_SECONDS, TransferReport, transfer_buffer
from surveydm.publish.report.rejected import rejected_files


@dataclass
class NightSummary:
    """What ``surveydm night`` reports at the end."""

    transfer: TransferReport
    obs_sets: list[str]
    production_id: int
    root_jobs: list[int]
    mosaics: int = 0
    science: int = 0
    ccds_reduced: int = 0
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    quality_failures: int = 0
    qc_pass: int = 0
    qc_total: int = 0
    elapsed_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: every file or obs set not reduced, with why: (``<obs set>/<file>``, reason), in the
    #: order transfer (still arriving, quarantined, missing), registration, failed jobs
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def qc_pass_rate(self) -> float | None:
        """Fraction of reduced science mosaics whose QC passed (pass or warn)."""
        return self.qc_pass / self.qc_total if self.qc_total else None


def nightly_config(refcat: str, **extra: Any) -> dict[str, Any]:
    """The nightly production's configuration (it identifies the production with the release
    and code version)."""
    return {"refcat": refcat, **extra}


def run_night(
    settings: Settings,
    buffer_dir: Path,
    *,
    processes: int = 2,
    refcat: str = "pixelsim",
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    transfer_progress: Callable[..., None] | None = None,
    job_progress: Callable[..., None] | None = None,
) -> NightSummary:
    """Transfer, register and reduce every complete observation set in ``buffer_dir``.

    ``settle_seconds``: how long a short file must stay unchanged before the transfer takes it
    as truncated rather than still arriving (:func:`~surveydm.pipelines.transfer.transfer_buffer`).
    The summary's ``rejected`` names every file not reduced, with its reason.

    Raises:
        surveydm.errors.SurveydmError: the buffer cannot be read or the registry is unusable.
    """
    t0 = time.perf_counter()
    # the pilots' settings, and one core per CCD job (astroscrappy would use OpenMP threads)
    pilot_env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    pilot_env.update(settings_environment(settings))
    url = settings.resolved_database_url
    upgrade(url)
    registry = Registry(url)
    archive = Archive(settings.archive_root)
    load_task_modules(TASK_MODULES)
    report = transfer_buffer(
        registry, archive, Path(buffer_dir), settle_seconds=settle_seconds,
        progress=transfer_progress,
    )  # fmt: skip
    config = nightly_config(refcat)
    production_id = get_or_create_production(registry, "nightly", settings.release, config)
    # every obs set of the buffer that is in the registry (transferred now or by a past run)
    with registry.session(write=False) as s:
        names = sorted(
            s.scalars(
                select(ObsSet.obs_set).where(
                    ObsSet.obs_set.in_([o.obs_set for o in report.obs_sets])
                )
            )
        )
    jobs = JobManager(registry)
    roots = []
    for name in names:
        # one register job per obs set and production: its key, not its display name
        key = job_key(obs_set=name, production=production_id)
        try:
            root = jobs.submit(
                "register",
                key=key,
                name=f"register {name}",
                config={**config, "obs_set": name},
                production_id=production_id,
            )
        except DuplicateJobError as dup:
            root = dup.job_id  # submitted by an earlier run: run (or finish) that one
        roots.append(root)
    for root in roots:
        run_local(url, root_job_id=root, processes=processes, progress=job_progress, env=pilot_env)
    summary = summarize_night(registry, report, names, production_id, roots)
    summary.elapsed_s = time.perf_counter() - t0
    registry.dispose()
    return summary


def summarize_night(
    registry: Registry,
    report: TransferReport,
    names: list[str],
    production_id: int,
    roots: list[int],
) -> NightSummary:
    """Count what the night produced and how its jobs ended."""

    summary = NightSummary(report, names, production_id, roots)
    with registry.session(write=False) as s:
        obs_ids = s.scalars(select(ObsSet.id).where(ObsSet.obs_set.in_(names))).all()
        summary.mosaics = s.scalar(
            select(func.count()).where(Mosaic.obs_set_id.in_(obs_ids), Mosaic.parent_id.is_(None))
        )
        reduced = s.scalars(
            select(Mosaic).where(
                Mosaic.obs_set_id.in_(obs_ids),
                Mosaic.kind == "red_science",
                Mosaic.production_id == production_id,
            )
        ).all()
        summary.science = len(reduced)
        summary.qc_total = sum(m.qc_status is not None for m in reduced)
        summary.qc_pass = sum(m.qc_status in (QCResult.PASS, QCResult.WARN) for m in reduced)
        summary.ccds_reduced = s.scalar(
            select(func.count()).where(
                Image.mosaic_id.in_([m.id for m in reduced]), Image.amp_num.is_(None)
            )
        )
        # one condition for all roots: a tree_select CTE per root would repeat the CTE name
        in_tree = or_(Job.id.in_(roots), Job.root_id.in_(roots)) if roots else Job.id.is_(None)
        for status, n in s.execute(
            select(Job.status, func.count()).where(in_tree).group_by(Job.status)
        ):
            summary.jobs_by_status[status] = n
        for name, reason in s.execute(
            select(Job.name, func.coalesce(Job.quality, Job.fault)).where(
                in_tree, Job.status.in_(["failed", "failed_quality"])
            )
        ):
            summary.failures.append((name, (reason or "")[:200]))
        summary.faults = s.scalar(select(func.count()).where(in_tree, Job.fault.is_not(None)))
        nights = s.scalars(select(ObsSet.night).where(ObsSet.obs_set.in_(names))).all()
        registered = rejected_files(s, min(nights), max(nights)) if nights else []
        summary.quality_failures = summary.jobs_by_status.get("failed_quality", 0)
    summary.rejected = _rejections(report, names, registered, summary.failures)
    return summary


def _rejections(
    report: TransferReport,
    names: list[str],
    unregistered: list,
    failures: list[tuple[str, str]],
) -> list[tuple[str, str]]:
    """(what, why) of everything the night did not reduce: obs sets still arriving or with a
    malformed manifest, files the transfer rejected, files not registered, then failed jobs
    not about a file already named."""
    out: dict[str, str] = {}
    for o in report.obs_sets:
        if o.status in ("pending", "rejected") and not o.files:
            out[o.obs_set] = o.reason or o.status
        for f in o.rejected:
            out[f"{o.obs_set}/{f.name}"] = f.reason or f.status
        if o.status == "pending" and o.files:
            out.setdefault(o.obs_set, o.reason or "still arriving")
    for r in unregistered:
        if r.obs_set in names:
            out.setdefault(f"{r.obs_set}/{r.filename}", r.reason)
    named = {what.rsplit("/", 1)[-1] for what in out}
    for job, why in failures:
        if job.removeprefix("register ") not in named:
            out.setdefault(job, why)
    return list(out.items())
