"""``surveydm tiles`` (sky tilings) and ``surveydm coadd`` (tile co-adds and catalogs)."""

from __future__ import annotations

import typer
from rich.table import Table

from surveydm.cli.common import clear_errors, console, exit_if_rejected, registry
from surveydm.cli.common import settings as settings_

tiles_app = typer.Typer(help="Sky tilings: named grids of co-add tiles.", no_args_is_help=True)


def _range(text: str | None, what: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{what}: give two numbers, e.g. 149.5,150.5") from None
    return lo, hi


@tiles_app.command("define")
@clear_errors
def tiles_define(
    name: str = typer.Argument(..., help="tiling name (prefix of its tile names)"),
    preset: str = typer.Option("mini", help='jplus (1.4 deg, 0.55"/pix) or mini (0.1 deg)'),
    size: float | None = typer.Option(None, help="tile side, deg (overrides the preset)"),
    pixel_scale: float | None = typer.Option(None, help="arcsec/pixel (overrides the preset)"),
    overlap: float | None = typer.Option(None, help="minimum overlap, deg"),
    ra: str | None = typer.Option(None, help="RA range of tile centres, deg: lo,hi"),
    dec: str | None = typer.Option(None, help="Dec range of tile centres, deg: lo,hi"),
) -> None:
    """Register the tiles of a tiling over a region (default: the reduced images so far)."""
    from surveydm.pipelines.coadd.tiles import PRESETS, TilingPreset, define_tiling

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    geometry = TilingPreset(
        size if size is not None else base.size_deg,
        pixel_scale if pixel_scale is not None else base.pixel_scale,
        overlap if overlap is not None else base.overlap_deg,
    )
    added = define_tiling(
        registry(), name, geometry, ra_range=_range(ra, "--ra"), dec_range=_range(dec, "--dec")
    )
    console.print(f"[green]{len(added)}[/] tile(s) added to tiling [bold]{name}[/]")


@tiles_app.command("list")
@clear_errors
def tiles_list(tiling: str | None = typer.Option(None, help="only this tiling")) -> None:
    """List the registered tiles."""
    from surveydm.pipelines.coadd.tiles import get_tiles

    table = Table("tile", "ra", "dec", "size (deg)", "pixels", 'scale ("/pix)')
    with registry().session(write=False) as s:
        for t in get_tiles(s, tiling=tiling):
            table.add_row(
                t.name,
                f"{t.ra:.4f}",
                f"{t.dec:.4f}",
                f"{t.size_deg:g}",
                f"{t.naxis1}x{t.naxis2}",
                f"{t.pixel_scale:g}",
            )
    console.print(table)


@tiles_app.command("stale")
@clear_errors
def tiles_stale() -> None:
    """List co-adds made from an input since flagged invalid or failed QC (to reprocess)."""
    from surveydm.pipelines.coadd.inputs import stale_tiles

    table = Table("tile", "band", "production", "bad inputs (product ids)")
    with registry().session(write=False) as s:
        for t in stale_tiles(s):
            table.add_row(t.tile, t.band, str(t.production_id), ", ".join(map(str, t.bad_inputs)))
    console.print(table)


@clear_errors
def coadd(
    tile: list[str] = typer.Option([], "--tile", help="tile name (repeatable; default: all)"),
    band: list[str] = typer.Option([], "--band", help="band (repeatable; default: all)"),
    release: str | None = typer.Option(None, "--release", help="output and input release"),
    tiling: str | None = typer.Option(None, "--tiling", help="only tiles of this tiling"),
    reference: str = typer.Option("r", "--reference-band", help="dual-mode detection band"),
    kernel: str = typer.Option("bilinear", help="resampling: bilinear, reproject or adaptive"),
    processes: int = typer.Option(1, "--processes", "-p", min=1, help="local pilot processes"),
) -> None:
    """Co-add tiles per band with pixel rejection, then single- and dual-mode catalogs."""
    from surveydm.pipelines.coadd.run import CoaddRequest, run_coadd

    if kernel not in ("bilinear", "reproject", "adaptive"):
        raise typer.BadParameter("--kernel: bilinear, reproject or adaptive")
    s = settings_()
    request = CoaddRequest(
        tiles=tuple(tile),
        bands=tuple(band),
        tiling=tiling,
        release=release or s.release,
        reference_band=reference,
        stack={"kernel": kernel},
    )
    with console.status("co-adding"):
        summary = run_coadd(s, request, processes=processes)
    table = Table(
        "tile",
        "band",
        "inputs",
        "depth (5σ)",
        'PSF (")',
        "rejected",
        "QC",
        title=f"surveydm coadd (production {summary.production_id})",
    )
    for name, b, n, depth, fwhm, rej, quality in summary.tiles:
        table.add_row(
            name,
            b,
            str(n),
            "-" if depth is None else f"{depth:.2f}",
            "-" if fwhm is None else f"{fwhm:.2f}",
            f"{100 * rej:.2f}%",
            quality,
        )
    console.print(table)
    console.print("jobs: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary.counts.items())))
    exit_if_rejected(
        f"job tree {summary.root_job_id}: {n} job(s) {status}"
        for status, n in summary.counts.items()
        if status.startswith("failed") and n
    )


def register(app: typer.Typer) -> None:
    """Add ``tiles`` and ``coadd`` to ``app``."""
    app.add_typer(tiles_app, name="tiles")
    app.command("coadd")(coadd)
