"""Remaking products as jobs: ``reprocess`` (exactly the stale products and what depends on
them, in a new production) and ``make`` (Astro-WISE's target processing, seed 003: a target is
returned when it exists and is up to date; otherwise its missing or stale inputs are made first,
then the target: backward chaining).

Both end in a :class:`RemakePlan`: steps (task + configuration of the job that makes a product,
with the steps it must wait for), submitted as one ``remake`` job whose prolog creates a sub-job
per step with its dependencies, in the production that will own the new products. Nothing is
overwritten: a new production files its products under its own release.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db import Registry
from surveydm.db.models.jobs import Job
from surveydm.db.models.production import Product, ProductInput, Production
from surveydm.db.models.raw import Mosaic, ObsSet
from surveydm.errors import SurveydmError
from surveydm.orchestration import JobContext, JobManager, Task, job_key, register_task
from surveydm.pipelines.calibrations import find_calibration
from surveydm.pipelines.instrument_versions import obs_set_instrument
from surveydm.pipelines.lineage.stale import StaleProduct, stale_products
from surveydm.pipelines.productions import open_reprocessing


class MakeError(SurveydmError):
    """A target that cannot be made (unknown product type, incomplete data ID, no raw data)."""


@dataclass(frozen=True)
class Step:
    """One job to run: ``task`` with ``config``, after the steps at indices ``after``;
    ``remakes``: ids of the products it replaces (empty when it makes a missing one)."""

    task: str
    name: str
    config: dict[str, Any]
    after: tuple[int, ...] = ()
    remakes: tuple[int, ...] = ()


@dataclass
class RemakePlan:
    """The jobs that remake products of one source production (None: make missing ones), and
    the stale products that no job can remake (no job recorded), by id."""

    source_production_id: int | None
    steps: list[Step] = field(default_factory=list)
    unmakeable: list[int] = field(default_factory=list)

    @property
    def products(self) -> list[int]:
        """Ids of every product the plan remakes."""
        return sorted(p for s in self.steps for p in s.remakes)


# -- reprocess --------------------------------------------------------------------------------


def plan_reprocess(session: Session, stale: Sequence[StaleProduct]) -> list[RemakePlan]:
    """One plan per pipeline (its source: the newest production of the stale products): a step
    per job that made stale products (same task and configuration), ordered as the original
    jobs ran, each after the steps that remake its inputs."""
    pipelines = dict(session.execute(select(Production.id, Production.pipeline)).all())
    groups: dict[str, list[StaleProduct]] = {}
    orphans = [i.id for i in stale if i.production_id is None]
    for item in stale:
        if item.production_id is not None:
            groups.setdefault(pipelines[item.production_id], []).append(item)
    plans = [
        _plan_one(session, max(i.production_id or 0 for i in items), items)
        for _, items in sorted(groups.items())
    ]
    if orphans:
        plans.append(RemakePlan(None, unmakeable=orphans))
    return plans


def _plan_one(session: Session, production_id: int | None, items: list[StaleProduct]) -> RemakePlan:
    plan = RemakePlan(production_id, unmakeable=[i.id for i in items if i.job_id is None])
    by_job: dict[int, list[int]] = {}
    for item in items:
        if item.job_id is not None:
            by_job.setdefault(item.job_id, []).append(item.id)
    jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(list(by_job))))}
    made_by = {pid: jid for jid, pids in by_job.items() for pid in pids}
    edges = session.execute(
        select(ProductInput.product_id, ProductInput.input_id).where(
            ProductInput.product_id.in_(list(made_by)), ProductInput.input_id.in_(list(made_by))
        )
    ).all()
    order = sorted(by_job)
    index = {jid: k for k, jid in enumerate(order)}
    for jid in order:
        after = sorted({index[made_by[i]] for p, i in edges if made_by[p] == jid} - {index[jid]})
        job = jobs[jid]
        plan.steps.append(
            Step(job.task, job.name.removeprefix("remake "), dict(job.config), tuple(after),
                 tuple(sorted(by_job[jid])))
        )  # fmt: skip
    return plan


def default_release(source_release: str) -> str:
    """The release name of a reprocessing: the source's with the UTC time appended."""
    return f"{source_release}-{datetime.now(UTC):%Y%m%dT%H%M%S}"


@dataclass(frozen=True)
class Submitted:
    """A submitted remake: the production that gets the products and its ``remake`` job."""

    production_id: int
    job_id: int
    plan: RemakePlan


def reprocess(
    registry: Registry, stale: Sequence[StaleProduct], *, release: str | None = None
) -> list[Submitted]:
    """Open a new production per source production of ``stale`` (same pipeline and
    configuration, release ``release`` or :func:`default_release`) and submit the ``remake``
    job of its plan. Old products stay as they are, queryable.

    Raises:
        ProductionExistsError: ``release`` is taken by that pipeline.
    """
    with registry.session(write=False) as s:
        plans = plan_reprocess(s, stale)
        releases = {p.id: p.release for p in s.scalars(select(Production))}
    out = []
    for plan in plans:
        if plan.source_production_id is None or not plan.steps:
            continue
        rel = release or default_release(releases[plan.source_production_id])
        new = open_reprocessing(registry, plan.source_production_id, rel)
        out.append(Submitted(new, submit_plan(registry, plan, new, f"reprocess into {rel}"), plan))
    return out


def submit_plan(registry: Registry, plan: RemakePlan, production_id: int, name: str) -> int:
    """Submit the ``remake`` job of ``plan`` in ``production_id``; returns its id."""
    steps = [asdict(s) for s in plan.steps]
    return JobManager(registry).submit(
        "remake",
        key=job_key(remake=datetime.now(UTC).isoformat(), production=production_id),
        name=name,
        config={"steps": steps},
        production_id=production_id,
    )


# -- the remake task ----------------------------------------------------------------------------

#: How a step's configuration is adapted to the production it now runs in, by task.
Adapter = Callable[[Session, dict[str, Any], int | None], dict[str, Any]]


def _single_epoch_ccd(session: Session, config: dict[str, Any], prod: int | None) -> dict[str, Any]:
    """A CCD's image row belongs to the reduced mosaic of the new production."""
    from surveydm.pipelines.nightly.single_epoch import reduced_mosaic

    raw = session.get(Mosaic, config["mosaic_id"])
    return {**config, "reduced_mosaic_id": reduced_mosaic(session, raw, prod).id}


ADAPTERS: dict[str, Adapter] = {"single_epoch_ccd": _single_epoch_ccd}


@register_task
class Remake(Task):
    """Runs a :class:`RemakePlan`: one sub-job per step, with the plan's dependencies."""

    name = "remake"
    description = "remake products: reprocess stale ones or make a target"
    max_attempts = 1

    def prolog(self, ctx: JobContext) -> None:
        refs = []
        with ctx.registry.session() as s:
            for raw in ctx.config["steps"]:
                step = Step(
                    **{**raw, "after": tuple(raw["after"]), "remakes": tuple(raw["remakes"])}
                )
                adapt = ADAPTERS.get(step.task)
                config = adapt(s, step.config, ctx.production_id) if adapt else step.config
                refs.append(
                    ctx.add_subjob(step.task, name=step.name, config=config,
                                   after=[refs[i] for i in step.after])
                )  # fmt: skip
        ctx.log(f"{len(refs)} step(s)")


# -- make ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MakeResult:
    """What ``make`` did: ``up_to_date`` (the product exists and is current: ``product_id``),
    or ``submitted`` (the ``remake`` job ``job_id`` in ``production_id`` with its plan)."""

    status: str
    product_id: int | None = None
    job_id: int | None = None
    production_id: int | None = None
    plan: RemakePlan | None = None


def parse_data_id(text: str) -> dict[str, Any]:
    """``"obs_set=20261120_001,filter_tray=r"`` -> dict (integers converted).

    Raises:
        MakeError: a part is not ``key=value``.
    """
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise MakeError(f"data ID part {part!r} is not key=value")
        out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return out


def find_product(session: Session, product_type: str, data_id: dict[str, Any]) -> Product | None:
    """The newest product of ``product_type`` whose data ID has every item of ``data_id``."""
    stmt = select(Product).where(Product.product_type == product_type)
    for key, value in data_id.items():
        field_ = Product.data_id[key]
        stmt = stmt.where(
            field_.as_integer() == value if isinstance(value, int) else field_.as_string() == value
        )
    return session.scalars(stmt.order_by(Product.id.desc()).limit(1)).first()


def make(
    registry: Registry, product_type: str, data_id: dict[str, Any], *, production_id: int
) -> MakeResult:
    """Return the product if it exists and is up to date; else submit the jobs that make it:
    its stale inputs first (in a new production, as :func:`reprocess`), or, when it is missing,
    the master calibrations its exposure lacks and then the target, in ``production_id``.

    Raises:
        MakeError: unknown ``product_type``, incomplete ``data_id``, or the target is flagged
            bad.
    """
    with registry.session() as s:
        found = find_product(s, product_type, data_id)
        if found is not None and found.validity == "bad":
            raise MakeError(
                f"product:{found.id} is flagged bad: made again from the same inputs it would be "
                "the same; flag the bad input instead and run `surveydm reprocess --stale`"
            )
        if found is not None:
            ancestors = _ancestors(s, found.id)
            stale = stale_products(s, within=[*ancestors, found.id])
            if not any(item.id == found.id for item in stale):
                return MakeResult("up_to_date", product_id=found.id)
        else:
            stale = None
            plan = RemakePlan(None, _recipe(s, product_type, data_id))
    if stale is not None:
        done = reprocess(registry, stale)
        first = done[0]
        return MakeResult("submitted", found.id, first.job_id, first.production_id, first.plan)
    job = submit_plan(registry, plan, production_id, f"make {product_type} {data_id}")
    return MakeResult("submitted", None, job, production_id, plan)


def _ancestors(session: Session, product_id: int) -> list[int]:
    from surveydm.db.lineage import edges

    return sorted({e.input_id for e in edges(session, [product_id], "inputs")})


#: Product types ``make`` can build from raw data, and the data ID each needs.
MAKEABLE = {
    "master_bias": ("obs_set",),
    "master_flat": ("obs_set", "filter_tray"),
    "reduced_sci": ("mosaic_id", "ccd"),
    "reduced_wht": ("mosaic_id", "ccd"),
    "reduced_msk": ("mosaic_id", "ccd"),
}


def _recipe(session: Session, product_type: str, data_id: dict[str, Any]) -> list[Step]:
    """The steps making a missing product (backward chaining over its calibrations)."""
    need = MAKEABLE.get(product_type)
    if need is None:
        raise MakeError(f"cannot make {product_type!r}: makeable types are {sorted(MAKEABLE)}")
    missing = [k for k in need if k not in data_id]
    if missing:
        raise MakeError(f"{product_type} needs {', '.join(missing)} in its data ID")
    if product_type == "master_bias":
        return [Step("master_bias", f"master bias {data_id['obs_set']}", dict(data_id))]
    if product_type == "master_flat":
        steps = _calibration_steps(session, data_id["obs_set"], None, need_flat=False)
        cfg = {"obs_set": data_id["obs_set"], "filter_tray": data_id["filter_tray"]}
        name = f"master flat {data_id['obs_set']} {data_id['filter_tray']}"
        return [*steps, Step("master_flat", name, cfg, tuple(range(len(steps))))]
    raw = session.get(Mosaic, data_id["mosaic_id"])
    if raw is None or raw.kind != "science":
        raise MakeError(f"mosaic {data_id['mosaic_id']} is no registered science exposure")
    obs = session.get(ObsSet, raw.obs_set_id)
    steps = _calibration_steps(session, obs.obs_set, raw, need_flat=True)
    cfg = {"mosaic_id": raw.id, "ccd_num": int(data_id["ccd"]), "obs_set": obs.obs_set}
    cfg |= _production_config(session)
    name = f"{raw.filename} CCD {data_id['ccd']}"
    return [*steps, Step("single_epoch_ccd", name, cfg, tuple(range(len(steps))))]


def _production_config(session: Session) -> dict[str, Any]:
    """The configuration of the newest nightly production (reference catalog...)."""
    prod = session.scalars(
        select(Production).where(Production.pipeline == "nightly").order_by(Production.id.desc())
    ).first()
    return dict(prod.config) if prod else {}


def _calibration_steps(
    session: Session, obs_set: str, raw: Mosaic | None, *, need_flat: bool
) -> list[Step]:
    """Master bias (and flat) steps for ``obs_set`` when no valid frame covers the exposure."""
    obs = session.scalar(select(ObsSet).where(ObsSet.obs_set == obs_set))
    if obs is None:
        raise MakeError(f"observation set {obs_set!r} is not registered")
    when = raw.date_obs if raw is not None else _first(session, obs.id, "flat")
    instrument = obs_set_instrument(session, obs).name
    steps: list[Step] = []
    if when is None or find_calibration(session, "master_bias", instrument, when) is None:
        steps.append(Step("master_bias", f"master bias {obs_set}", {"obs_set": obs_set}))
    if need_flat and raw is not None:
        tray = raw.filter_tray
        if find_calibration(session, "master_flat", instrument, when, filter_tray=tray) is None:
            cfg = {"obs_set": obs_set, "filter_tray": tray}
            steps.append(Step("master_flat", f"master flat {obs_set} {tray}", cfg,
                              tuple(range(len(steps)))))  # fmt: skip
    return steps


def _first(session: Session, obs_set_id: int, kind: str) -> datetime | None:
    return session.scalar(
        select(Mosaic.date_obs)
        .where(Mosaic.obs_set_id == obs_set_id, Mosaic.kind == kind)
        .order_by(Mosaic.date_obs)
        .limit(1)
    )


__all__ = [
    "ADAPTERS",
    "MAKEABLE",
    "MakeError",
    "MakeResult",
    "Remake",
    "RemakePlan",
    "Step",
    "Submitted",
    "find_product",
    "make",
    "parse_data_id",
    "plan_reprocess",
    "reprocess",
    "submit_plan",
]
