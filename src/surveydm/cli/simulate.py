"""``surveydm simulate``: write a simulated raw night into an observatory buffer."""

from __future__ import annotations

from pathlib import Path

import typer

from surveydm.cli.common import clear_errors, console


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


@clear_errors
def simulate(
    instrument: str = typer.Option(
        "paucam-mini", "--instrument", "-i", help="built-in name or instrument YAML path"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="observatory buffer directory"),
    night: str = typer.Option("2026-11-20", "--night", help="night date, YYYY-MM-DD"),
    seed: int = typer.Option(0, "--seed", help="random seed of the night"),
    science: int = typer.Option(6, "--science", min=0, help="number of science exposures"),
    bias: int = typer.Option(5, "--bias", min=0, help="number of bias frames"),
    flats: int = typer.Option(3, "--flats", min=0, help="dome flats per filter tray"),
    trays: str | None = typer.Option(
        None, "--trays", help="comma-separated filter trays (default: first tray and r)"
    ),
    test: int = typer.Option(1, "--test", min=0, help="TEST (closed-shutter) files"),
    focus: int = typer.Option(1, "--focus", min=0, help="FOCUS exposures"),
    truth: Path | None = typer.Option(
        None, "--truth", help="truth directory (default: <out>_truth, never inside --out)"
    ),
    nights: str | None = typer.Option(
        None,
        "--nights",
        help="a multi-night survey, YYYY-MM-DD..YYYY-MM-DD: pointings planned so the central "
        "objects fall on every narrow-band CCD --repeats times, plus a deep reference catalog "
        "(replaces --night and --science; docs/memba.md)",
    ),
    repeats: int = typer.Option(2, "--repeats", min=1, help="survey visits per pointing/tray"),
) -> None:
    """Simulate one night of raw data (obs set with MEF mosaics + manifest) and its truth."""
    if nights:
        _survey(instrument, out, nights, seed, bias, flats, trays, truth, repeats)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from surveydm.simulation import simulate_night

    tray_list = [t.strip() for t in trays.split(",") if t.strip()] if trays else None
    with Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{instrument} {night}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = simulate_night(
            instrument,
            out,
            night=night,
            seed=seed,
            n_bias=bias,
            n_flats_per_tray=flats,
            n_science=science,
            trays=tray_list,
            n_test=test,
            n_focus=focus,
            truth_dir=truth,
            progress=progress,
        )
    kinds: dict[str, list[int]] = {}
    for f in result.files:
        kinds.setdefault(f.kind, []).append(f.size)
    table = Table(title=f"obs set {result.obs_set} ({result.instrument}, night {result.night})")
    table.add_column("kind")
    table.add_column("files", justify="right")
    table.add_column("bytes", justify="right")
    for kind, sizes in kinds.items():
        table.add_row(kind, str(len(sizes)), _human(sum(sizes)))
    table.add_row("[bold]total[/]", str(len(result.files)), _human(result.total_bytes))
    console.print(table)
    console.print(f"buffer:   {result.out_dir / result.obs_set}")
    console.print(f"manifest: {result.manifests[0]}")
    console.print(
        f"truth:    {result.truth_dir} (objects, exposures, refcat: {result.refcat.name})"
    )
    console.print(f"elapsed:  {result.elapsed_s:.1f} s")


def _survey(
    instrument: str,
    out: Path,
    nights: str,
    seed: int,
    bias: int,
    flats: int,
    trays: str | None,
    truth: Path | None,
    repeats: int,
) -> None:
    """``--nights``: a multi-night survey (:func:`surveydm.simulation.survey.simulate_survey`)."""
    from rich.table import Table

    from surveydm.simulation.survey import parse_nights, simulate_survey

    tray_list = [t.strip() for t in trays.split(",") if t.strip()] if trays else None
    dates = parse_nights(nights)

    def progress(night: str, done: int, total: int) -> None:
        if done == total:
            console.print(f"simulated {night}: {total} files")

    survey = simulate_survey(
        instrument, out, dates, trays=tray_list, repeats=repeats, seed=seed, n_bias=bias,
        n_flats_per_tray=flats, truth_dir=truth, progress=progress,
    )  # fmt: skip
    table = Table(title=f"survey {dates[0]}..{dates[-1]} ({len(survey.pointings_deg)} pointings)")
    for col in ("night", "obs set", "science", "bytes"):
        table.add_column(col)
    for n in survey.nights:
        table.add_row(n.night, n.obs_set, str(len(n.files_of("science"))), _human(n.total_bytes))
    console.print(table)
    hx, hy = survey.central_half_size_deg
    console.print(f"central area: +-{hx * 3600:.0f} x +-{hy * 3600:.0f} arcsec around the field")
    console.print(f"truth:        {survey.truth_dir}")
    console.print(f"deep refcat:  {survey.deep_refcat}")


def register(app: typer.Typer) -> None:
    """Add ``surveydm simulate`` to ``app``."""
    app.command("simulate")(simulate)
