"""Lineage pages (seed 003 "tell me everything"): ``/lineage/{id}`` draws the graph of a
product, image, raw exposure or detection (what it was made from, or with
``?direction=dependents`` what was made from it) as server-side SVG and lists every product with
its job, production and calibration validity; ``/lineage/job/{id}`` lists a job's products.
JSON twins under ``/api/lineage/``, and W3C PROV-JSON at ``/api/lineage/{id}/prov``. Read-only:
flags are set with ``surveydm flag``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from pydantic import BaseModel
from sqlalchemy import select

from surveydm.db.lineage import Edge, ProductNode
from surveydm.db.models.production import Product
from surveydm.pipelines.lineage.graph import LineageGraph, lineage
from surveydm.pipelines.lineage.prov import prov_json
from surveydm.pipelines.lineage.resolve import DetectionRef, UnknownTargetError, resolve
from surveydm.publish.web.lineage_svg import MAX_NODES, lineage_svg
from surveydm.publish.web.portal import PageNotFound, Portal, portal

router = APIRouter()
DirectionQ = Annotated[Literal["inputs", "dependents"], Query()]


class LineageOut(BaseModel):
    """A lineage graph: the product asked about, the direction walked, every product reached
    with how it was made, and the edges (product made from input, in a role)."""

    root: int
    direction: str
    detection: DetectionRef | None
    nodes: list[ProductNode]
    edges: list[Edge]


def _graph(p: Portal, ident: str, direction: str) -> LineageGraph:
    with p.registry.session(write=False) as s:
        try:
            return lineage(s, resolve(s, ident), direction)  # type: ignore[arg-type]
        except UnknownTargetError as exc:
            raise PageNotFound(str(exc)) from None


@router.get("/api/lineage/{ident}", response_model=LineageOut, tags=["lineage"])
def api_lineage(
    ident: str, p: Annotated[Portal, Depends(portal)], direction: DirectionQ = "inputs"
) -> Any:
    """The lineage graph of a product (uuid, ``product:N``), ``image:N``, ``mosaic:N`` or
    ``detection:N``."""
    g = _graph(p, ident, direction)
    return LineageOut(root=g.root, direction=g.direction, detection=g.detection,
                      nodes=[g.nodes[k] for k in sorted(g.nodes)], edges=g.edges)  # fmt: skip


@router.get("/api/lineage/{ident}/prov", tags=["lineage"])
def api_lineage_prov(
    ident: str, p: Annotated[Portal, Depends(portal)], direction: DirectionQ = "inputs"
) -> dict[str, Any]:
    """The lineage graph as a W3C PROV-JSON document."""
    return prov_json(_graph(p, ident, direction))


@router.get("/lineage/job/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def page_job_products(
    request: Request, job_id: int, p: Annotated[Portal, Depends(portal)]
) -> HTMLResponse:
    with p.registry.session(write=False) as s:
        rows = s.scalars(select(Product).where(Product.job_id == job_id).order_by(Product.id)).all()
    return p.render(request, "lineage_job.html", job_id=job_id, products=rows)


@router.get("/lineage/{ident}", response_class=HTMLResponse, include_in_schema=False)
def page_lineage(
    request: Request,
    ident: str,
    p: Annotated[Portal, Depends(portal)],
    direction: DirectionQ = "inputs",
) -> HTMLResponse:
    g = _graph(p, ident, direction)
    return p.render(
        request,
        "lineage.html",
        ident=ident,
        g=g,
        nodes=[g.nodes[k] for k in sorted(g.nodes)],
        svg=Markup(lineage_svg(g)),  # noqa: S704 (built by lineage_svg with every text escaped)
        truncated=len(g.nodes) > MAX_NODES,
        max_nodes=MAX_NODES,
    )
