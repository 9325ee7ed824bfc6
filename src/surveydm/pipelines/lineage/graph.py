"""A product's lineage as a typed graph: every product reached, every edge with its role,
built from the recursive queries of :mod:`surveydm.db.lineage`, and its JSON form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from surveydm.db import lineage as q
from surveydm.db.lineage import Direction, Edge, ProductNode
from surveydm.pipelines.lineage.resolve import DetectionRef, Target


@dataclass(frozen=True)
class LineageGraph:
    """The products reachable from ``root`` in ``direction``.

    Attributes:
        root: the product asked about; direction: ``inputs`` (what it was made from, down to
        the raw files) or ``dependents`` (everything made from it); nodes: every product
        reached, root included, by id; edges: (product, input, role); detection: the detection
        asked about, when one was; hidden: products left out because the reader may not read
        them (:meth:`restricted`).
    """

    root: int
    direction: Direction
    nodes: dict[int, ProductNode]
    edges: list[Edge]
    detection: DetectionRef | None = None
    hidden: int = 0

    def restricted(self, readable: set[int]) -> LineageGraph:
        """What a reader of some releases only may see: the products reached from the root
        through ``readable`` products alone, and the edges between them (a readable raw file
        behind an unreadable image is left out too). The root must be readable."""
        keep, frontier = {self.root}, [self.root]
        while frontier:
            here = frontier.pop()
            for _, nxt in self.children(here):
                if nxt in readable and nxt not in keep:
                    keep.add(nxt)
                    frontier.append(nxt)
        nodes = {k: v for k, v in self.nodes.items() if k in keep}
        edges = [e for e in self.edges if e.product_id in keep and e.input_id in keep]
        hidden = self.hidden + len(self.nodes) - len(nodes)
        return dataclasses.replace(self, nodes=nodes, edges=edges, hidden=hidden)

    def children(self, product_id: int) -> list[tuple[str, int]]:
        """(role, product id) one step further from the root than ``product_id``, in order."""
        if self.direction == "inputs":
            return [(e.role, e.input_id) for e in self.edges if e.product_id == product_id]
        return [(e.role, e.product_id) for e in self.edges if e.input_id == product_id]

    def of_type(self, product_type: str) -> list[ProductNode]:
        """The nodes of one product type, by id."""
        return [n for _, n in sorted(self.nodes.items()) if n.product_type == product_type]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: ``root``, ``direction``, ``detection``, ``nodes`` (list),
        ``edges`` (list of ``{product_id, input_id, role}``), ``hidden``; times in ISO 8601
        UTC."""
        return _jsonable(
            {
                "root": self.root,
                "direction": self.direction,
                "detection": self.detection,
                "nodes": [self.nodes[k] for k in sorted(self.nodes)],
                "edges": self.edges,
                "hidden": self.hidden,
            }
        )


def lineage(session: Session, target: Target, direction: Direction = "inputs") -> LineageGraph:
    """The lineage graph of ``target`` in ``direction`` (two queries: the recursive walk and the
    details of the products it reached)."""
    found = q.edges(session, [target.product_id], direction)
    ids = {target.product_id} | {e.product_id for e in found} | {e.input_id for e in found}
    return LineageGraph(
        target.product_id, direction, q.nodes(session, ids), found, target.detection
    )


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
