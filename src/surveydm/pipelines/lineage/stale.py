"""What is out of date, and why, derived by one recursive query (Astro-WISE's ``uptodate()``,
seed 003; the causes named as Dagster names them: code, configuration, data).

A product is *stale* when

* **data**: one of its inputs was flagged bad (``bad_input``), or a better calibration frame
  now covers the time of its exposure than the one it used (``better_calibration``: one that
  :func:`surveydm.pipelines.calibrations.find_calibration` would now prefer: it covers the time
  where the used one did not, passed QC where the used one warned, or is newer with the same
  QC), or one of its inputs is stale (``stale_input``, followed recursively through
  ``product_input``);
* **code**: its production ran another code version than the one now installed;
* **configuration**: its production's configuration differs from that of the newest production
  of its pipeline.

A product that a later production has remade (same type and data ID: *superseded*) is not
listed, nor is one flagged bad itself (it is not to be remade but replaced by its inputs' next
best), nor raw files and loaded catalogs (no production).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, and_, cast, exists, literal, or_, select, union
from sqlalchemy.orm import Session, aliased

from surveydm import __version__
from surveydm.db.lineage import inputs_query, without_jit
from surveydm.db.models.calibration import CalibrationFrame
from surveydm.db.models.production import Product, ProductInput, Production
from surveydm.db.models.raw import Mosaic
from surveydm.orchestration.qc import QCResult

#: Cause of each kind of staleness.
CAUSES = {
    "bad_input": "data",
    "better_calibration": "data",
    "stale_input": "data",
    "code_version": "code",
    "configuration": "configuration",
}


@dataclass(frozen=True)
class StaleCause:
    """Why a product is stale: ``cause`` (code, configuration, data), ``kind`` (see
    :data:`CAUSES`) and ``source_id``: the bad input, the better calibration's product, the
    stale input, or the product's production (for code and configuration)."""

    cause: str
    kind: str
    source_id: int

    def describe(self) -> str:
        """One line for listings."""
        return {
            "bad_input": f"input product:{self.source_id} flagged bad",
            "better_calibration": f"a better calibration covers it: product:{self.source_id}",
            "stale_input": f"input product:{self.source_id} is stale",
            "code_version": f"production {self.source_id} ran another code version",
            "configuration": f"production {self.source_id} had another configuration",
        }[self.kind]


@dataclass
class StaleProduct:
    """A stale product with every cause found (sorted)."""

    id: int
    product_type: str
    data_id: dict[str, Any]
    production_id: int | None
    job_id: int | None
    causes: list[StaleCause] = field(default_factory=list)


def stale_products(
    session: Session,
    *,
    product_type: str | None = None,
    production_id: int | None = None,
    obs_set: str | None = None,
    code_version: str = __version__,
    within: Sequence[int] | None = None,
) -> list[StaleProduct]:
    """Every stale product with its causes (one recursive query; see the module docstring),
    by id; only of ``product_type`` / ``production_id`` when given.

    ``obs_set`` (a night's products: data ID ``obs_set``) or ``within`` (product ids) limit
    the listing *and* the work: causes are then sought only among those products and their
    ancestors (found by a recursive walk), which is what makes a night's listing fast on a
    large registry; without them the whole registry is examined. ``code_version`` is the code
    now installed (default: this surveydm's version)."""
    chosen = None
    if within is not None:
        chosen = select(Product.id).where(Product.id.in_(list(within)))
    elif obs_set is not None:
        chosen = select(Product.id).where(Product.data_id["obs_set"].as_string() == obs_set)
    scope = None
    if chosen is not None:  # evaluated once, used by the scope and the final filter
        chosen = select(chosen.cte("stale_chosen").prefix_with("MATERIALIZED").c.id)
        scope = _with_ancestors(chosen)
    seeds = _seeds(code_version, scope).cte("stale_seed").prefix_with("MATERIALIZED")
    walk = select(seeds.c.product_id, seeds.c.kind, seeds.c.source_id).cte("stale", recursive=True)
    step = select(ProductInput.product_id, literal("stale_input"), walk.c.product_id).join(
        walk, ProductInput.input_id == walk.c.product_id
    )
    if scope is not None:
        step = step.where(ProductInput.product_id.in_(select(scope.c.id)))
    walk = walk.union(step)
    stmt = (
        select(walk.c.product_id, walk.c.kind, walk.c.source_id, Product)
        .join(Product, Product.id == walk.c.product_id)
        .where(Product.validity != "bad", ~_superseded(Product))
        .order_by(walk.c.product_id, walk.c.kind, walk.c.source_id)
    )
    if product_type is not None:
        stmt = stmt.where(Product.product_type == product_type)
    if production_id is not None:
        stmt = stmt.where(Product.production_id == production_id)
    if chosen is not None:
        stmt = stmt.where(Product.id.in_(chosen))
    without_jit(session)
    out: dict[int, StaleProduct] = {}
    for pid, kind, source, p in session.execute(stmt):
        item = out.setdefault(
            pid, StaleProduct(pid, p.product_type, dict(p.data_id), p.production_id, p.job_id)
        )
        item.causes.append(StaleCause(CAUSES[kind], kind, source))
    return list(out.values())


def _with_ancestors(chosen):  # noqa: ANN001, ANN202
    """A materialised CTE (column ``id``) of the ``chosen`` products and all their inputs."""
    up = inputs_query(chosen)
    return union(chosen, select(up.c.input_id)).cte("stale_scope").prefix_with("MATERIALIZED")


def _seeds(code_version: str, scope):  # noqa: ANN001, ANN202 (a compound select)
    """(product_id, kind, source_id) of the products stale for a cause of their own (only
    those in the CTE ``scope`` when given)."""
    inp = aliased(Product)
    bad = (
        select(ProductInput.product_id.label("product_id"), literal("bad_input").label("kind"),
               ProductInput.input_id.label("source_id"))
        .join(inp, inp.id == ProductInput.input_id)
        .where(inp.validity == "bad")
    )  # fmt: skip
    newest = aliased(Production)
    latest_hash = (
        select(newest.config_hash)
        .where(newest.pipeline == Production.pipeline)
        .order_by(newest.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    code = (
        select(Product.id, literal("code_version"), Production.id)
        .join(Production, Production.id == Product.production_id)
        .where(Production.software_version != code_version)
    )
    config = (
        select(Product.id, literal("configuration"), Production.id)
        .join(Production, Production.id == Product.production_id)
        .where(Production.config_hash != latest_hash)
    )
    if scope is not None:
        ids = select(scope.c.id)
        bad = bad.where(ProductInput.product_id.in_(ids))
        code = code.where(Product.id.in_(ids))
        config = config.where(Product.id.in_(ids))
    return union(bad, _better_calibration(scope), code, config)


def _better_calibration(scope):  # noqa: ANN001, ANN202
    """Products whose exposure time a better calibration frame now covers.

    First (a materialised CTE) every calibration input with the time of the product's raw
    exposure, then, per row, the frames of the same kind, instrument and tray covering that
    time (a range scan of the ``calibration_frame`` index): without the first step the
    planners pair every frame with every other before filtering by time."""
    used, better = aliased(CalibrationFrame), aliased(CalibrationFrame)
    used_p, better_p, raw = aliased(Product), aliased(Product), aliased(Product)
    raw_edge = aliased(ProductInput)
    uses = (
        select(ProductInput.product_id.label("product_id"), used.id.label("frame_id"),
               used.kind, used.instrument, used.filter_tray, used.created,
               used.valid_from, used.valid_until, used_p.quality,
               Mosaic.date_obs.label("when"))
        .join(used, used.product_id == ProductInput.input_id)
        .join(used_p, used_p.id == used.product_id)
        .join(raw_edge, and_(raw_edge.product_id == ProductInput.product_id,
                             raw_edge.role == "raw"))
        .join(raw, raw.id == raw_edge.input_id)
        .join(Mosaic, Mosaic.archive_file_id == raw.file_id)
    )  # fmt: skip
    if scope is not None:
        uses = uses.where(ProductInput.product_id.in_(select(scope.c.id)))
    uses = uses.cte("calibration_use").prefix_with("MATERIALIZED")
    u = uses.c
    return (
        select(u.product_id, literal("better_calibration"), better.product_id)
        .join(better, and_(
            better.kind == u.kind,
            better.instrument == u.instrument,
            or_(better.filter_tray == u.filter_tray,
                and_(better.filter_tray.is_(None), u.filter_tray.is_(None))),
            better.valid_from <= u.when,
            better.valid_until >= u.when,
            better.id != u.frame_id,
        ))
        .join(better_p, and_(better_p.id == better.product_id, better_p.valid.is_(True),
                             better_p.quality != QCResult.FAIL))
        .where(or_(
            ~and_(u.valid_from <= u.when, u.valid_until >= u.when),
            and_(better_p.quality == QCResult.PASS, u.quality == QCResult.WARN),
            and_(better_p.quality == u.quality, better.created > u.created),
        ))
    )  # fmt: skip


def _superseded(p: type[Product]):  # noqa: ANN202
    """EXISTS a product of the same type and data ID in a later production (reprocessing
    always opens a newer one): a range scan of the (product_type, production_id) index."""
    later = aliased(Product)
    return exists().where(
        later.product_type == p.product_type,
        later.production_id > p.production_id,
        cast(later.data_id, String) == cast(p.data_id, String),
    )
