"""The ``memba`` job (seed 000 section 6.1 item 3): one ``forced_phot`` sub-job per reduced CCD
image not yet measured in this production, then (epilog) ``forced_coadd`` sub-jobs in chunks of
the reference sources those images touched; and :func:`run_memba`, which opens the production,
submits the job and runs it (``surveydm memba``)."""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select

from surveydm.config import Settings, settings_environment
from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.db.models.jobs import Job
from surveydm.db.models.multiepoch import ForcedAperture, ForcedApertureCoadd, MembaRefCat
from surveydm.db.models.production import Product, Production
from surveydm.db.models.raw import Image, Mosaic, ObsSet
from surveydm.orchestration import JobContext, JobManager, Task, register_task, run_local
from surveydm.orchestration.records import job_key
from surveydm.orchestration.tasks import load_task_modules
from surveydm.pipelines import TASK_MODULES
from surveydm.pipelines.memba.refcat import deep_refcat_id
from surveydm.pipelines.productions import get_or_create_production
from surveydm.reduction.forced_photometry import ForcedConfig

#: Reference sources per ``forced_coadd`` job.
DEFAULT_CHUNK = 2000
MEMBA_MODULE = "surveydm.pipelines.memba"


def _image_key(image_id: int, production_id: int | None) -> str:
    return job_key(image=image_id, production=production_id)


def candidate_images(
    registry: Registry, release: str, nights: list[str] | None, production_id: int | None
) -> list[tuple[int, str]]:
    """(image id, display name) of calibrated reduced CCD images of ``release`` (optionally of
    the given nights, ``YYYY-MM-DD``) without a ``forced_phot`` job in this production."""
    with registry.session(write=False) as s:
        q = (
            select(Image.id, Mosaic.filename, Image.ccd_num)
            .join(Mosaic, Mosaic.id == Image.mosaic_id)
            .join(ObsSet, ObsSet.id == Mosaic.obs_set_id)
            .join(Product, Product.id == Image.product_id)
            .join(Production, Production.id == Product.production_id)
            .where(Mosaic.kind == "red_science", Image.amp_num.is_(None),
                   Image.zp_nightly.is_not(None), Production.release == release)
            .order_by(Image.id)
        )  # fmt: skip
        if nights:
            q = q.where(ObsSet.night.in_([dt.date.fromisoformat(n) for n in nights]))
        rows = s.execute(q).all()
        done = set(
            s.scalars(select(Job.key).where(Job.task == "forced_phot", Job.key.is_not(None)))
        )
    return [
        (i, f"{name} CCD{ccd:02d}")
        for i, name, ccd in rows
        if _image_key(i, production_id) not in done
    ]


@register_task
class Memba(Task):
    """The memba pipeline of one run: forced photometry per image, then co-adds per chunk."""

    name = "memba"
    description = "memba: forced photometry of new images, then co-adds of the sources touched"

    def prolog(self, ctx: JobContext) -> None:
        cfg = ctx.config
        images = candidate_images(ctx.registry, cfg["release"], cfg.get("nights"),
                                  ctx.production_id)  # fmt: skip
        for image_id, name in images:
            ctx.add_subjob("forced_phot", name=f"forced {name}",
                           config={**_shared(cfg), "image_id": image_id},
                           key=_image_key(image_id, ctx.production_id))  # fmt: skip
        ctx.log(f"{len(images)} images to measure")

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        if any(j.task == "forced_coadd" for j in subs):
            return
        measured = [
            int(j.output["image_id"])
            for j in subs
            if j.task == "forced_phot" and j.status == "done" and j.output
        ]
        refs: list[int] = []
        bands: list[str] = []
        if measured:
            with ctx.registry.session(write=False) as s:
                touched = select(ForcedAperture.ref_id, ForcedAperture.band).where(
                    ForcedAperture.production_id == ctx.production_id,
                    ForcedAperture.image_id.in_(measured),
                )
                pairs = s.execute(touched.distinct()).all()
            refs = sorted({r for r, _ in pairs})
            bands = sorted({b for _, b in pairs})
        chunk = int(ctx.config.get("chunk", DEFAULT_CHUNK))
        for k in range(0, len(refs), chunk):
            part = refs[k : k + chunk]
            config = {**_shared(ctx.config), "ref_ids": part, "bands": bands}
            ctx.add_subjob("forced_coadd", name=f"coadd refs {part[0]}..{part[-1]}", config=config)
        ctx.output = {**(ctx.output or {}), "images": len(measured), "sources": len(refs)}


def _shared(cfg: dict[str, Any]) -> dict[str, Any]:
    keep = ("refcat", "refcat_id", "refcat_product_id", "run", "forced")
    return {k: cfg[k] for k in keep if k in cfg}


@dataclass
class MembaSummary:
    """What :func:`run_memba` did: production, run number, jobs by status, rows in the
    production after the run, elapsed seconds."""

    production_id: int
    run: int
    images: int
    jobs_by_status: dict[str, int]
    forced_rows: int
    coadd_rows: int
    elapsed_s: float = 0.0


def memba_config(refcat: str, forced: dict[str, Any] | None = None) -> dict[str, Any]:
    """The memba production's configuration (identifies it with the release and version): the
    reference catalog and every forced-photometry option in effect (defaults included, so a
    change of a default opens a new production).

    Raises:
        ValueError: an unknown forced-photometry option.
    """
    try:
        effective = asdict(ForcedConfig(**(forced or {})))
    except TypeError as exc:
        raise ValueError(f"unknown forced-photometry option: {exc}") from None
    return {"refcat": refcat, "forced": effective}


def run_memba(
    settings: Settings,
    *,
    refcat: str = "deep",
    nights: list[str] | None = None,
    processes: int = 2,
    chunk: int = DEFAULT_CHUNK,
    forced: dict[str, Any] | None = None,
) -> MembaSummary:
    """Submit and run one memba job over the reduced images of ``settings.release``.

    Raises:
        surveydm.pipelines.refcat.RefCatError: no deep reference catalog ``refcat``.
        surveydm.errors.SurveydmError: the registry is unusable.
    """
    t0 = time.perf_counter()
    url = settings.resolved_database_url
    upgrade(url)
    registry = Registry(url)
    try:
        refcat_id, refcat_product = deep_refcat_id(registry, refcat)
        config = memba_config(refcat, forced)
        pid = get_or_create_production(registry, "memba", settings.release, config)
        with registry.session() as s:
            if s.get(MembaRefCat, pid) is None:
                s.add(MembaRefCat(production_id=pid, refcat_id=refcat_id, ref_cat=refcat))
            run = 1 + (
                s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.task == "memba", Job.production_id == pid)
                )
                or 0
            )
        images = candidate_images(registry, settings.release, nights, pid)
        load_task_modules([*TASK_MODULES, MEMBA_MODULE])
        root = JobManager(registry).submit(
            "memba",
            key=job_key(production=pid, run=run),
            name=f"memba run {run} ({refcat})",
            config={
                **config,
                "refcat_id": refcat_id,
                "refcat_product_id": refcat_product,
                "release": settings.release,
                "nights": nights,
                "run": run,
                "chunk": chunk,
            },  # fmt: skip
            production_id=pid,
        )
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        env.update(settings_environment(settings))
        run_local(url, root_job_id=root, processes=processes, env=env,
                  modules=[*TASK_MODULES, MEMBA_MODULE])  # fmt: skip
        return summarize(registry, pid, run, root, len(images), time.perf_counter() - t0)
    finally:
        registry.dispose()


def summarize(
    registry: Registry, pid: int, run: int, root: int, images: int, elapsed: float
) -> MembaSummary:
    """Counts of the run's job tree and of the production's rows."""
    from surveydm.orchestration.reads import tree_select

    with registry.session(write=False) as s:
        statuses = s.scalars(select(Job.status).where(Job.id.in_(tree_select(root)))).all()
        by: dict[str, int] = {}
        for status in statuses:
            by[str(status)] = by.get(str(status), 0) + 1
        n_forced = s.scalar(
            select(func.count()).select_from(ForcedAperture)
            .where(ForcedAperture.production_id == pid)
        )  # fmt: skip
        n_coadd = s.scalar(
            select(func.count()).select_from(ForcedApertureCoadd)
            .where(ForcedApertureCoadd.production_id == pid)
        )  # fmt: skip
    return MembaSummary(pid, run, images, by, int(n_forced or 0), int(n_coadd or 0), elapsed)
