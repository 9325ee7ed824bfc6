"""PNG rendering shared by the report and the portal: matplotlib's Agg canvas on a bare
``Figure`` (no pyplot state, so figures can be drawn from several threads at once)."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure_png(fig: Figure, *, dpi: int = 90) -> bytes:
    """Render ``fig`` to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def empty_png(message: str, *, size: tuple[float, float] = (4.0, 3.0)) -> bytes:
    """A small PNG with ``message`` in the middle (shown when there is nothing to plot)."""
    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555")
    return figure_png(fig)
