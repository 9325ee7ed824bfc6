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

from sqlalchemy import (
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    literal,
    or_,
    select,
    union,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from surveydm import __version__
from surveydm.db.expressions import obs_set_key
from surveydm.db.lineage import index_lookups, inputs_query, without_jit
from surveydm.db.models.calibration import CalibrationFrame
from surveydm.db.models.production import Product, ProductInput, Production
from surveydm.db.models.raw import Mosaic
from surveydm.orchestration.qc import QCResult

#: Cause of each kind of staleness.
CAUSES = {
    "bad_input": "data",
    "failed_input": "data",
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
            "failed_input": f"input product:{self.source_id} failed QC",
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
    wanted = None  # the condition on a product that it is asked about
    if within is not None:
        wanted = Product.id.in_(list(within))
    elif obs_set is not None:
        wanted = obs_set_key(Product.data_id) == obs_set
    scope = edges = None
    if wanted is not None:
        chosen = select(Product.id).where(wanted).cte("stale_chosen").prefix_with("MATERIALIZED")
        scope, edges = _with_ancestors(select(chosen.c.id))
    seeds = _seeds(code_version, scope, edges).cte("stale_seed").prefix_with("MATERIALIZED")
    walk = select(seeds.c.product_id, seeds.c.kind, seeds.c.source_id).cte("stale", recursive=True)
    # Not limited to the scope: a path from a seed to a chosen product runs through the chosen
    # product's ancestors only, so the final filter gives the same rows, and the step stays a
    # lookup of the ``product_input.input_id`` index (limited, the planners probed every
    # (scope product, stale product) pair: 0.9 million probes for a night).
    step = select(ProductInput.product_id, literal("stale_input"), walk.c.product_id).join(
        walk, ProductInput.input_id == walk.c.product_id
    )
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
    if wanted is not None:  # a condition on the row, not a join with another CTE
        stmt = stmt.where(wanted)
    without_jit(session)
    out: dict[int, StaleProduct] = {}
    with index_lookups(session, scope is not None):
        rows = session.execute(stmt).all()
    for pid, kind, source, p in rows:
        item = out.setdefault(
            pid, StaleProduct(pid, p.product_type, dict(p.data_id), p.production_id, p.job_id)
        )
        item.causes.append(StaleCause(CAUSES[kind], kind, source))
    return list(out.values())


def bad_inputs(
    session: Session, products: Select[tuple[int]], *, role: str | None = None,
    failed_qc: bool = True,
) -> dict[int, list[StaleCause]]:  # fmt: skip
    """The data causes of the products ``products`` (a SELECT of product ids) found on their
    direct inputs alone (in ``role`` when given), in one query: an input flagged bad
    (``bad_input``) or, with ``failed_qc``, an input whose QC failed (``failed_input``: its
    job's QC was redone since). Product id -> causes, by input id.

    What :func:`stale_products` seeds with, asked of one kind of product: the co-adds made
    from an image flagged invalid are reprocessed (seed 002, CEFCA:
    :func:`surveydm.pipelines.coadd.inputs.stale_tiles`)."""
    inp = aliased(Product)
    failed = inp.quality == QCResult.FAIL
    kind = case((_flagged_bad(inp), literal("bad_input")), else_=literal("failed_input"))
    q = (
        select(ProductInput.product_id, kind, ProductInput.input_id)
        .join(inp, inp.id == ProductInput.input_id)
        .where(ProductInput.product_id.in_(products))
        .where(or_(_flagged_bad(inp), failed) if failed_qc else _flagged_bad(inp))
        .order_by(ProductInput.product_id, ProductInput.input_id)
    )
    if role is not None:
        q = q.where(ProductInput.role == role)
    out: dict[int, list[StaleCause]] = {}
    for pid, k, source in session.execute(q):
        out.setdefault(pid, []).append(StaleCause(CAUSES[k], k, source))
    return out


def _flagged_bad(p):  # noqa: ANN001, ANN202
    """A product flagged bad (``validity``) or marked not valid (``valid``, which calibration
    selection reads)."""
    return or_(p.validity == "bad", p.valid.is_(False))


def _with_ancestors(chosen):  # noqa: ANN001, ANN202
    """(scope, edges): a materialised CTE (column ``id``) of the ``chosen`` products and all
    their inputs, and the recursive CTE of the edges walked to find them, which are exactly
    the input edges of every product in the scope."""
    up = inputs_query(chosen)
    scope = union(chosen, select(up.c.input_id)).cte("stale_scope").prefix_with("MATERIALIZED")
    return scope, up


def _seeds(code_version: str, scope, edges):  # noqa: ANN001, ANN202 (a compound select)
    """(product_id, kind, source_id) of the products stale for a cause of their own (only
    those in the CTE ``scope`` when given, whose input edges are the CTE ``edges``)."""
    inp = aliased(Product)
    e = ProductInput.__table__.c if edges is None else edges.c  # the scope's edges, walked once
    bad = (
        select(e.product_id.label("product_id"), literal("bad_input").label("kind"),
               e.input_id.label("source_id"))
        .join(inp, inp.id == e.input_id)
        .where(_flagged_bad(inp))
    )  # fmt: skip
    own = _production_causes(code_version)
    if scope is None:
        by_production = select(Product.id, own.c.kind, own.c.production_id).join(
            own, own.c.production_id == Product.production_id
        )
    else:  # driven by the scope (a night: ~1000 products), never by a production's products
        by_production = (
            select(Product.id, own.c.kind, own.c.production_id)
            .select_from(scope)
            .join(Product, Product.id == scope.c.id)
            .join(own, own.c.production_id == Product.production_id)
        )
    return union(bad, _better_calibration(scope), by_production)


def _production_causes(code_version: str):  # noqa: ANN202 (a CTE)
    """A materialised CTE (production_id, kind) of the productions whose products are all
    stale for a cause of their own: another code version than ``code_version``, or another
    configuration than the newest production of the same pipeline. A handful of rows at most,
    found once per production rather than once per product."""
    newest = aliased(Production)
    latest_hash = (
        select(newest.config_hash)
        .where(newest.pipeline == Production.pipeline)
        .order_by(newest.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    code = select(Production.id.label("production_id"), literal("code_version").label("kind"))
    config = select(Production.id, literal("configuration"))
    return (
        union_all(
            code.where(Production.software_version != code_version),
            config.where(Production.config_hash != latest_hash),
        )
        .cte("stale_production")
        .prefix_with("MATERIALIZED")
    )


def _better_calibration(scope):  # noqa: ANN001, ANN202
    """Products whose exposure time a better calibration frame now covers.

    Three materialised steps, each small: every calibration input with the time of the
    product's raw exposure (``calibration_use``); the distinct (kind, instrument, tray, time)
    among them, one per exposure rather than one per CCD product; the valid frames covering
    each (a range scan of the ``calibration_frame`` index per exposure). The uses are then
    matched to those candidates. Pairing every use with every frame of its kind instead costs
    (CCD products x frames) comparisons: 0.9 s for a night on SQLite."""
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
    times = (
        select(u.kind, u.instrument, u.filter_tray, u.when).distinct()
        .cte("calibration_time").prefix_with("MATERIALIZED")
    )  # fmt: skip
    t = times.c
    candidates = (
        select(t.kind, t.instrument, t.filter_tray, t.when, better.id.label("frame_id"),
               better.product_id, better.created, better_p.quality)
        .join(better, and_(
            better.kind == t.kind,
            better.instrument == t.instrument,
            _same_tray(better.filter_tray, t.filter_tray),
            better.valid_from <= t.when,
            better.valid_until >= t.when,
        ))
        .join(better_p, and_(better_p.id == better.product_id, better_p.valid.is_(True),
                             better_p.quality != QCResult.FAIL))
        .cte("calibration_candidate").prefix_with("MATERIALIZED")
    )  # fmt: skip
    c = candidates.c
    return (
        select(u.product_id, literal("better_calibration"), c.product_id)
        .join(candidates, and_(
            c.kind == u.kind,
            c.instrument == u.instrument,
            _same_tray(c.filter_tray, u.filter_tray),
            c.when == u.when,
            c.frame_id != u.frame_id,
        ))
        .where(or_(
            ~and_(u.valid_from <= u.when, u.valid_until >= u.when),
            and_(c.quality == QCResult.PASS, u.quality == QCResult.WARN),
            and_(c.quality == u.quality, c.created > u.created),
        ))
    )  # fmt: skip


def _same_tray(a, b):  # noqa: ANN001, ANN202
    """Equal filter trays, NULL (no tray: biases) matching NULL."""
    return or_(a == b, and_(a.is_(None), b.is_(None)))


def _superseded(p: type[Product]):  # noqa: ANN202
    """EXISTS a product of the same type and data ID in a later production (reprocessing
    always opens a newer one): a range scan of the (product_type, production_id) index."""
    later = aliased(Product)
    return exists().where(
        later.product_type == p.product_type,
        later.production_id > p.production_id,
        cast(later.data_id, String) == cast(p.data_id, String),
    )
