"""Lineage pages (seed 003 "tell me everything"): ``/lineage/{id}`` draws the graph of a
product, image, raw exposure or detection (what it was made from, or with
``?direction=dependents`` what was made from it) as server-side SVG and lists every product with
its job, production and calibration validity; ``/lineage/job/{id}`` lists a job's products.
JSON twins under ``/api/lineage/``, and W3C PROV-JSON at ``/api/lineage/{id}/prov``.

A reader sees only the products of the releases it may read (:mod:`surveydm.publish.web.auth`):
the others are left out of the graph (their number is given), and asking for one is 401/403.

Curators flag the product of a page bad, ok or qualified with a reason, or undo the last change
(``POST /lineage/{id}/flag`` from the page's form, with the session's CSRF token;
``POST /api/flags/{id}`` with a Bearer token), recorded through
:mod:`surveydm.pipelines.lineage.flags` (who, when, why; an erratum inside a frozen release).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from pydantic import BaseModel, Field
from sqlalchemy import select

from surveydm.db.access import Role
from surveydm.db.lineage import Edge, ProductNode
from surveydm.db.models.production import Product
from surveydm.pipelines.lineage.flags import (
    FlagChange,
    FlagError,
    Validity,
    history,
    set_validity,
    undo_last,
)
from surveydm.pipelines.lineage.graph import LineageGraph, lineage
from surveydm.pipelines.lineage.prov import prov_json
from surveydm.pipelines.lineage.resolve import DetectionRef, UnknownTargetError, resolve
from surveydm.publish.web.auth import CuratorUser, check_csrf, current_user, deny, visible
from surveydm.publish.web.lineage_svg import MAX_NODES, lineage_svg
from surveydm.publish.web.portal import PageNotFound, Portal, portal

router = APIRouter()
DirectionQ = Annotated[Literal["inputs", "dependents"], Query()]


class LineageOut(BaseModel):
    """A lineage graph: the product asked about, the direction walked, every product reached
    with how it was made, the edges (product made from input, in a role), and how many
    products were left out because the caller may not read them."""

    root: int
    direction: str
    detection: DetectionRef | None
    nodes: list[ProductNode]
    edges: list[Edge]
    hidden: int = 0


class FlagIn(BaseModel):
    """A validity flag to set (``validity`` with a ``reason``; bad needs one) or, with
    ``undo``, the last change to undo."""

    validity: Literal["bad", "ok", "qualified"] | None = None
    reason: str = Field("", max_length=2000)
    undo: bool = False


class FlagOut(BaseModel):
    """A recorded flag change: its id, the product, old and new flag, who, when, why, the
    change it undoes and the releases in which it recorded an erratum."""

    id: int
    product_id: int
    previous: str
    validity: str
    author: str
    reason: str
    time: datetime
    undoes_id: int | None
    errata: list[str]


def _graph(request: Request, p: Portal, ident: str, direction: str) -> LineageGraph:
    """The lineage graph of ``ident`` restricted to what the caller may read (401/403 when
    the product asked about is not)."""
    vis = visible(request)
    with p.registry.session(write=False) as s:
        try:
            g = lineage(s, resolve(s, ident), direction)  # type: ignore[arg-type]
        except UnknownTargetError as exc:
            raise PageNotFound(str(exc)) from None
        if vis.everything:
            return g
        readable = vis.readable_products(s, set(g.nodes))
    if g.root not in readable:
        deny(current_user(request), f"product:{g.root} is in a release you may not read")
    return g.restricted(readable)


@router.get("/api/lineage/{ident}", response_model=LineageOut, tags=["lineage"])
def api_lineage(
    request: Request,
    ident: str,
    p: Annotated[Portal, Depends(portal)],
    direction: DirectionQ = "inputs",
) -> Any:
    """The lineage graph of a product (uuid, ``product:N``), ``image:N``, ``mosaic:N`` or
    ``detection:N``."""
    g = _graph(request, p, ident, direction)
    return LineageOut(root=g.root, direction=g.direction, detection=g.detection,
                      nodes=[g.nodes[k] for k in sorted(g.nodes)], edges=g.edges,
                      hidden=g.hidden)  # fmt: skip


@router.get("/api/lineage/{ident}/prov", tags=["lineage"])
def api_lineage_prov(
    request: Request,
    ident: str,
    p: Annotated[Portal, Depends(portal)],
    direction: DirectionQ = "inputs",
) -> dict[str, Any]:
    """The lineage graph as a W3C PROV-JSON document."""
    return prov_json(_graph(request, p, ident, direction))


def _flag(p: Portal, ident: str, user: str, body: FlagIn) -> FlagChange:
    with p.registry.session() as s:
        try:
            target = resolve(s, ident)
        except UnknownTargetError as exc:
            raise PageNotFound(str(exc)) from None
        if body.undo:
            return undo_last(s, target.product_id, author=user)
        if body.validity is None:
            raise FlagError("give a validity (bad, ok, qualified) or undo")
        return set_validity(s, target.product_id, Validity(body.validity), author=user,
                            reason=body.reason)  # fmt: skip


@router.post("/api/flags/{ident}", response_model=FlagOut, tags=["lineage"])
def api_flag(
    request: Request,
    ident: str,
    body: FlagIn,
    p: Annotated[Portal, Depends(portal)],
    user: CuratorUser,
) -> Any:
    """Set the human validity flag of a product (bad, ok, qualified, with a reason) or undo
    its last change; curators only. With the portal's session cookie the ``X-CSRF-Token``
    header must carry the session's token."""
    check_csrf(request, None)
    c = _flag(p, ident, user.name, body)
    return FlagOut(**{**c.__dict__, "errata": list(c.errata)})


@router.post("/lineage/{ident}/flag", include_in_schema=False)
def form_flag(
    request: Request,
    ident: str,
    p: Annotated[Portal, Depends(portal)],
    user: CuratorUser,
    action: Annotated[Literal["set", "undo"], Form()],
    validity: Annotated[Literal["bad", "ok", "qualified"] | None, Form()] = None,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    check_csrf(request, csrf_token)
    body = FlagIn(validity=validity, reason=reason, undo=action == "undo")
    change = _flag(p, ident, user.name, body)
    back = f"/lineage/product:{change.product_id}?flagged={change.id}"
    return RedirectResponse(back, status_code=303)


@router.get("/lineage/job/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def page_job_products(
    request: Request, job_id: int, p: Annotated[Portal, Depends(portal)]
) -> HTMLResponse:
    vis = visible(request)
    with p.registry.session(write=False) as s:
        rows = s.scalars(
            select(Product)
            .where(Product.job_id == job_id, vis.production_clause(Product.production_id))
            .order_by(Product.id)
        ).all()
    return p.render(request, "lineage_job.html", job_id=job_id, products=rows)


@router.get("/lineage/{ident}", response_class=HTMLResponse, include_in_schema=False)
def page_lineage(
    request: Request,
    ident: str,
    p: Annotated[Portal, Depends(portal)],
    direction: DirectionQ = "inputs",
    flagged: int | None = None,
) -> HTMLResponse:
    g = _graph(request, p, ident, direction)
    with p.registry.session(write=False) as s:
        flags = history(s, g.root)
    return p.render(
        request,
        "lineage.html",
        ident=ident,
        g=g,
        nodes=[g.nodes[k] for k in sorted(g.nodes)],
        svg=Markup(lineage_svg(g)),  # noqa: S704 (built by lineage_svg with every text escaped)
        truncated=len(g.nodes) > MAX_NODES,
        max_nodes=MAX_NODES,
        flags=flags,
        flagged=flagged,
        can_flag=current_user(request).has(Role.CURATOR),
    )
