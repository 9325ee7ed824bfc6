"""``surveydm memba``: the multi-epoch multi-band pipeline (forced photometry + co-adds), and
``surveydm memba load-refcat`` for its deep reference catalog, ``surveydm memba export`` for
its object catalog as HATS or Parquet (docs/memba.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from surveydm.cli.common import clear_errors, console, settings

memba_app = typer.Typer(
    help="Multi-epoch forced photometry (memba): run it, load its deep reference catalog, "
    "or export its object catalog.",
    invoke_without_command=True,
)


@memba_app.callback()
@clear_errors
def memba(
    ctx: typer.Context,
    release: str | None = typer.Option(None, "--release", help="release (default: settings)"),
    refcat: str = typer.Option("deep", "--refcat", help="deep reference catalog name"),
    nights: str | None = typer.Option(
        None, "--nights", help="only images of these nights: A..B or a comma-separated list"
    ),
    processes: int = typer.Option(2, "--processes", "-p", min=1, help="local worker processes"),
    chunk: int = typer.Option(2000, "--chunk", min=1, help="reference sources per co-add job"),
) -> None:
    """Measure every new reduced CCD image at the reference sources, then co-add per band."""
    if ctx.invoked_subcommand is not None:
        return
    from surveydm.pipelines.memba import run_memba
    from surveydm.simulation.survey import parse_nights

    s = settings()
    if release:
        s = s.model_copy(update={"release": release})
    night_list = [n.isoformat() for n in parse_nights(nights)] if nights else None
    out = run_memba(s, refcat=refcat, nights=night_list, processes=processes, chunk=chunk)
    console.print(
        f"memba production {out.production_id}, run {out.run}: {out.images} new images; "
        f"jobs {dict(sorted(out.jobs_by_status.items()))}"
    )
    console.print(
        f"forced_aperture rows: {out.forced_rows}; forced_aperture_coadd rows: {out.coadd_rows}"
        f"; {out.elapsed_s:.1f} s"
    )
    failed = out.jobs_by_status.get("failed", 0) + out.jobs_by_status.get("failed_quality", 0)
    if failed:
        raise typer.Exit(1)


@memba_app.command("load-refcat")
@clear_errors
def load_refcat(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="FITS/CSV/Parquet table"),
    name: str = typer.Option("deep", "--name", help="catalog name memba refers to"),
    replace: bool = typer.Option(False, "--replace", help="reload a catalog of that name"),
) -> None:
    """Load a deep reference catalog (id, ra, dec, a, b, theta [, mag_r, point_source])."""
    from surveydm.cli.common import registry
    from surveydm.pipelines.memba.refcat import load_deep_refcat

    reg = registry()
    try:
        n = load_deep_refcat(reg, path, name, replace=replace)
    finally:
        reg.dispose()
    console.print(f"loaded {n} deep reference sources as {name}")


@memba_app.command("export")
@clear_errors
def export(
    out: Path = typer.Argument(..., help="new HATS catalog directory, or Parquet file"),
    fmt: str = typer.Option("hats", "--format", help="hats (LSDB-readable) or parquet"),
    production: int | None = typer.Option(
        None, "--production", help="memba production id (default: the newest)"
    ),
    processes: int = typer.Option(2, "--processes", "-p", min=1, help="Dask threads"),
) -> None:
    """Export the object catalog with its co-added fluxes (HATS, or one Parquet file)."""
    from surveydm.cli.common import registry
    from surveydm.pipelines.memba.hats_export import export_objects

    reg = registry()
    try:
        done = export_objects(reg, out, fmt=fmt, production_id=production, processes=processes)
    finally:
        reg.dispose()
    console.print(
        f"wrote {done.rows} objects of memba production {done.production_id} "
        f"({len(done.bands)} bands) as {done.format} to {done.path}"
    )


@clear_errors
def associate(
    release: str | None = typer.Option(None, "--release", help="release (default: settings)"),
    radius: float = typer.Option(1.0, "--radius", min=0.01, help="match radius, arcsec"),
    processes: int = typer.Option(2, "--processes", "-p", min=1, help="local worker processes"),
) -> None:
    """Associate every nightly detection with an object (DVO-like, by HEALPix partition)."""
    from surveydm.pipelines.association import run_association

    s = settings()
    if release:
        s = s.model_copy(update={"release": release})
    out = run_association(s, radius_arcsec=radius, processes=processes)
    console.print(
        f"association production {out.production_id}: {out.partitions} partitions; "
        f"{out.objects} objects, {out.measures} detections; jobs "
        f"{dict(sorted(out.jobs_by_status.items()))}; {out.elapsed_s:.1f} s"
    )
    if out.jobs_by_status.get("failed", 0) or out.jobs_by_status.get("failed_quality", 0):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``surveydm memba`` and ``surveydm associate`` to ``app``."""
    app.add_typer(memba_app, name="memba")
    app.command("associate")(associate)
