"""``surveydm night``, ``surveydm demo`` and ``surveydm refcat``: the main job and its inputs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from surveydm.cli.common import clear_errors, console, exit_if_rejected, registry
from surveydm.cli.common import settings as settings_
from surveydm.orchestration.status import FINAL

refcat_app = typer.Typer(help="Reference catalogs in the registry.", no_args_is_help=True)


@refcat_app.command("load")
@clear_errors
def refcat_load(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="FITS, CSV or Parquet"),
    name: str = typer.Option(..., "--name", help="catalog name the pipelines refer to"),
    description: str = typer.Option("", help="free text"),
    epoch: float | None = typer.Option(None, help="epoch of positions (default: file or 2016.0)"),
    replace: bool = typer.Option(False, "--replace", help="reload a catalog of that name"),
) -> None:
    """Load a reference catalog (positions, proper motions, magnitudes per band)."""
    from surveydm.pipelines.refcat import load_refcat

    with console.status(f"loading {path.name}"):
        rep = load_refcat(
            registry(), path, name, description=description, epoch=epoch, replace=replace
        )
    console.print(
        f"[green]loaded[/] {rep.n_sources} sources in {len(rep.bands)} bands "
        f"as [bold]{rep.name}[/]{' (replaced)' if rep.replaced else ''}"
    )


@refcat_app.command("list")
@clear_errors
def refcat_list() -> None:
    """List the reference catalogs in the registry."""
    from sqlalchemy import select

    from surveydm.db.models.refcat import RefCat

    table = Table("name", "sources", "bands", "epoch", "file")
    with registry().session(write=False) as s:
        for cat in s.scalars(select(RefCat).order_by(RefCat.name)):
            table.add_row(cat.name, str(cat.n_sources), cat.bands, str(cat.epoch), cat.source_file)
    console.print(table)


def _run_night(buffer_dir: Path, processes: int, refcat: str, settle: float = 300.0) -> int:
    """Run the main job with live progress; print the summary; return the exit status."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from surveydm.pipelines.night import run_night

    s = settings_()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        transfer_bar = progress.add_task("transfer", total=None, detail="")
        jobs_bar = progress.add_task("jobs", total=None, detail="")

        def on_transfer(event) -> None:  # noqa: ANN001
            progress.update(
                transfer_bar, completed=event.done, total=event.total, detail=event.filename
            )

        def on_jobs(summary) -> None:  # noqa: ANN001
            counts = summary.counts
            finished = sum(counts.get(k, 0) for k in FINAL)
            running = counts.get("running", 0)
            failed = counts.get("failed", 0) + counts.get("failed_quality", 0)
            progress.update(
                jobs_bar,
                completed=finished,
                total=summary.total,
                detail=f"{running} running, {failed} failed",
            )

        result = run_night(
            s,
            buffer_dir,
            processes=processes,
            refcat=refcat,
            settle_seconds=settle,
            transfer_progress=on_transfer,
            job_progress=on_jobs,
        )
    _print_summary(result, s)
    try:  # every file not reduced, one line each on stderr (README: exit status)
        exit_if_rejected(f"{what}: {why}" for what, why in result.rejected)
    except typer.Exit as exc:
        return exc.exit_code
    return 1 if result.failures else 0


def _print_summary(result, s) -> None:  # noqa: ANN001
    table = Table(title="surveydm night", show_header=False)
    table.add_column("item")
    table.add_column("value")
    table.add_row("observation sets", ", ".join(result.obs_sets) or "none complete")
    table.add_row("mosaics registered", str(result.mosaics))
    table.add_row("science mosaics reduced", str(result.science))
    table.add_row("CCDs reduced", str(result.ccds_reduced))
    table.add_row("jobs", ", ".join(f"{k}: {v}" for k, v in sorted(result.jobs_by_status.items())))
    table.add_row("faults (retried or failed)", str(result.faults))
    n_rej = len(result.rejected)
    table.add_row("not reduced", f"{n_rej} (named on stderr)" if n_rej else "0")
    rate = result.qc_pass_rate
    table.add_row(
        "QC pass rate", "n/a" if rate is None else f"{100 * rate:.0f}% of {result.qc_total}"
    )
    table.add_row("elapsed", f"{result.elapsed_s:.1f} s")
    table.add_row("archive", str(s.archive_root))
    table.add_row("registry", s.resolved_database_url)
    table.add_row("report", "surveydm serve, then http://127.0.0.1:8000/report")
    console.print(table)


@clear_errors
def night(
    buffer_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="observatory buffer"),
    processes: int = typer.Option(2, "--processes", "-p", min=1, help="local worker processes"),
    refcat: str = typer.Option("pixelsim", help="reference catalog for calibration"),
    settle: float = typer.Option(300.0, help="seconds a short file must be quiet to be truncated"),
) -> None:
    """Transfer, register and reduce a night: the survey's morning job. Every file not
    reduced is named with its reason on stderr (exit status 1)."""
    raise typer.Exit(_run_night(buffer_dir, processes, refcat, settle))


@clear_errors
def demo(
    seed: int = typer.Option(1, help="simulation seed"),
    science: int = typer.Option(4, help="science exposures"),
    processes: int = typer.Option(2, "--processes", "-p", min=1),
    keep: Path | None = typer.Option(None, help="keep the simulated buffer here"),
) -> None:
    """Simulate a paucam-mini night and run `surveydm night` on it (embedded defaults)."""
    import tempfile

    from surveydm.pipelines.refcat import load_refcat
    from surveydm.simulation import simulate_night

    with tempfile.TemporaryDirectory(prefix="surveydm-demo-") as tmp:
        root = keep or Path(tmp)
        buffer_dir = root / "buffer"
        with console.status("simulating a paucam-mini night"):
            sim = simulate_night(
                "paucam-mini",
                buffer_dir,
                seed=seed,
                n_science=science,
                n_bias=3,
                n_flats_per_tray=3,
            )
        console.print(f"simulated {len(sim.files)} files into {buffer_dir}")
        load_refcat(
            registry(),
            sim.refcat_path,
            "pixelsim",
            replace=True,
            description="simulator reference catalog",
        )
        raise typer.Exit(_run_night(buffer_dir, processes, "pixelsim"))


def register(app: typer.Typer) -> None:
    """Add ``night``, ``demo`` and ``refcat`` to ``app``."""
    app.add_typer(refcat_app, name="refcat")
    app.command("night")(night)
    app.command("demo")(demo)
