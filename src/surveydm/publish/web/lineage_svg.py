"""A lineage graph drawn as server-side SVG: products in columns by their distance from the
product asked about (longest path, so every edge points one way), edges labelled with the
input's role, boxes coloured by QC and outlined red when flagged bad, each a link to its own
lineage page. No JavaScript and nothing fetched: the portal works offline."""

from __future__ import annotations

from html import escape

from surveydm.pipelines.lineage.graph import LineageGraph

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 200, 44, 90, 16, 20
#: Products drawn at most; a bigger graph is cut (the page says so) and listed in full below.
MAX_NODES = 400
FILL = {"pass": "#e3f4e1", "warn": "#fff4cc", "fail": "#fbdcdc"}


def columns(graph: LineageGraph) -> dict[int, int]:
    """Column of each product: 0 for the root, else 1 + the largest column of the products it
    is one step further than (longest path from the root; the graph is a DAG)."""
    col = {graph.root: 0}
    changed = True
    while changed:  # Bellman-Ford style relaxation; at most depth passes on a DAG
        changed = False
        for role_pid in graph.edges:
            near, far = (
                (role_pid.product_id, role_pid.input_id)
                if graph.direction == "inputs"
                else (role_pid.input_id, role_pid.product_id)
            )
            if near in col and col.get(far, -1) < col[near] + 1 <= len(graph.nodes):
                col[far] = col[near] + 1
                changed = True
    return col


def lineage_svg(graph: LineageGraph) -> str:
    """The SVG document (a string) of ``graph``, at most :data:`MAX_NODES` products."""
    col = columns(graph)
    shown = sorted(col, key=lambda pid: (col[pid], graph.nodes[pid].product_type, pid))
    shown = shown[:MAX_NODES]
    rows: dict[int, int] = {}
    per_col: dict[int, int] = {}
    for pid in shown:
        rows[pid] = per_col.get(col[pid], 0)
        per_col[col[pid]] = rows[pid] + 1
    pos = {
        pid: (PAD + col[pid] * (BOX_W + GAP_X), PAD + rows[pid] * (BOX_H + GAP_Y)) for pid in shown
    }
    width = PAD * 2 + (max(per_col) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max(per_col.values()) * (BOX_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="lineage-graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        'font-size="11">'
    ]
    for e in graph.edges:
        a, b = (e.product_id, e.input_id) if graph.direction == "inputs" else (
            e.input_id, e.product_id)  # fmt: skip
        if a not in pos or b not in pos:
            continue
        x1, y1 = pos[a][0] + BOX_W, pos[a][1] + BOX_H / 2
        x2, y2 = pos[b][0], pos[b][1] + BOX_H / 2
        parts.append(
            f'<g class="edge"><line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#888"/>'
            f'<text x="{(x1 + x2) / 2}" y="{(y1 + y2) / 2 - 3}" text-anchor="middle" '
            f'fill="#555">{escape(e.role)}</text></g>'
        )
    for pid in shown:
        parts.append(_box(graph, pid, *pos[pid]))
    parts.append("</svg>")
    return "".join(parts)


def _box(graph: LineageGraph, pid: int, x: float, y: float) -> str:
    node = graph.nodes[pid]
    bad = node.validity == "bad"
    stroke = "#c00" if bad else ("#000" if pid == graph.root else "#666")
    name = node.path.rsplit("/", 1)[-1] if node.path else ", ".join(
        f"{k}={v}" for k, v in node.data_id.items())  # fmt: skip
    flag = " BAD" if bad else ("" if node.validity == "ok" else f" {node.validity}")
    return (
        f'<a href="/lineage/product:{pid}" class="node" data-product-id="{pid}" '
        f'data-product-type="{escape(node.product_type)}">'
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" '
        f'fill="{FILL.get(node.quality, "#eee")}" stroke="{stroke}" '
        f'stroke-width="{3 if bad or pid == graph.root else 1}"/>'
        f'<text x="{x + 6}" y="{y + 16}" font-weight="bold">'
        f"{escape(node.product_type)} {pid}{escape(flag)}</text>"
        f'<text x="{x + 6}" y="{y + 32}" fill="#333">{escape(name[:32])}</text></a>'
    )
