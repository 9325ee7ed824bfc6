"""PNG charts of the portal drawn with matplotlib's Agg canvas (no pyplot state, so charts can
be drawn from several request threads at once; no browser-side plotting library, no network)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from surveydm.publish.report.figures import empty_png, figure_png
from surveydm.publish.web.schemas import ObsSetStatus

#: Colours of job statuses, shared by the pie chart and the evolution chart.
STATUS_COLOURS = {
    "pending": "#bdbdbd",
    "queued": "#90caf9",
    "running": "#1e88e5",
    "waiting": "#7e57c2",
    "done": "#43a047",
    "done_partial": "#c0ca33",
    "failed": "#e53935",
    "failed_quality": "#fb8c00",
    "skipped": "#8d6e63",
    "aborted": "#212121",
}


def pie_png(counts: Mapping[str, int], title: str) -> bytes:
    """Pie chart of ``counts`` (label -> count) with percentages (seed 000 section 7.1)."""
    items = [(k, v) for k, v in counts.items() if v > 0]
    if not items:
        return empty_png(f"{title}: no jobs")
    fig = Figure(figsize=(4.2, 3.4))
    ax = fig.add_subplot()
    labels = [k for k, _ in items]
    colours = [STATUS_COLOURS.get(k) for k in labels]
    ax.pie(
        [v for _, v in items],
        labels=[f"{k} ({v})" for k, v in items],
        colors=None if None in colours else colours,
        autopct="%1.0f%%",
        startangle=90,
        textprops={"fontsize": 8},
    )
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    return figure_png(fig)


def status_evolution_png(evolution: ObsSetStatus) -> bytes:
    """Stacked area chart of jobs per status against time for one obs set (seed 000 figure 9)."""
    if not evolution.series:
        return empty_png(f"no jobs for {evolution.obs_set}", size=(7, 3))
    times = [p.time for p in evolution.series]
    statuses = [s for s in STATUS_COLOURS if any(s in p.counts for p in evolution.series)]
    statuses += sorted({k for p in evolution.series for k in p.counts} - set(statuses))
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    ax.stackplot(
        times,
        [[p.counts.get(s, 0) for p in evolution.series] for s in statuses],
        labels=statuses,
        colors=[STATUS_COLOURS.get(s, "#999") for s in statuses],
        alpha=0.9,
    )
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("jobs")
    ax.set_title(f"jobs processing {evolution.obs_set} ({evolution.n_jobs})", fontsize=10)
    ax.legend(loc="upper left", fontsize=7, ncols=3)
    fig.autofmt_xdate()
    return figure_png(fig)


def histogram_png(values: Sequence[float], label: str, *, bins: int = 30) -> bytes:
    """Histogram of ``values`` (SQL browser plot)."""
    if not values:
        return empty_png(f"no numeric values in {label}")
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, color="#1e88e5", edgecolor="white")
    ax.set_xlabel(label)
    ax.set_ylabel("rows")
    return figure_png(fig)


def scatter_png(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str) -> bytes:
    """Scatter plot of two columns (SQL browser plot); ``x`` and ``y`` have equal length."""
    if not x:
        return empty_png("no rows with numeric values in both columns")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.scatter(x, y, s=8, color="#1e88e5")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return figure_png(fig)
