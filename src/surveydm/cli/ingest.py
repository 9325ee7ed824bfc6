"""``surveydm transfer | register | ingest | archive verify``: bring a night from the observatory
buffer into the archive and the registry, and check the archive's files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from surveydm.cli.common import clear_errors, console, exit_if_rejected, registry, settings

archive_app = typer.Typer(help="The file archive: verification.", no_args_is_help=True)


def _archive():  # noqa: ANN202
    from surveydm.archive import Archive

    return Archive(settings().archive_root)


class _Bars:
    """Rich progress bars fed by :class:`surveydm.pipelines.transfer.ProgressEvent`."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[what]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[tuple[str, str], int] = {}

    def __enter__(self) -> _Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event) -> None:  # noqa: ANN001
        key = (event.stage, event.obs_set)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(
                f"{event.stage} {event.obs_set}".strip(), total=event.total, what=""
            )
        self.progress.update(
            self.tasks[key], completed=event.done, total=event.total, what=event.filename
        )


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MiB"


def _transfer_table(report) -> Table:  # noqa: ANN001
    table = Table(title="transfer")
    table.add_column("obs set", no_wrap=True)
    for col in ("status", "copied", "already", "rejected", "note"):
        table.add_column(col)
    for o in report.obs_sets:
        notes = [o.reason or ""] + [f"{f.name}: {f.reason}" for f in o.rejected]
        table.add_row(
            o.obs_set,
            o.status,
            str(o.count("archived")),
            str(o.count("reused")),
            str(len(o.rejected)),
            "\n".join(n for n in notes if n),
        )
    return table


@clear_errors
def transfer(
    buffer_dir: Path = typer.Argument(..., help="observatory buffer: one directory per obs set"),
    settle: float = typer.Option(300.0, help="seconds a short file must be quiet to be truncated"),
) -> None:
    """Copy every ready obs set of BUFFER_DIR into the archive, verifying adler32 checksums."""
    from surveydm.pipelines.transfer import transfer_buffer

    reg = registry()
    with _Bars() as bars:
        report = transfer_buffer(reg, _archive(), buffer_dir, settle_seconds=settle, progress=bars)
    console.print(_transfer_table(report))
    console.print(
        f"{report.files_copied} file(s), {_mib(report.bytes_copied)} in {report.elapsed_s:.1f} s"
        f" ({report.mib_per_s:,.1f} MiB/s)"
    )
    exit_if_rejected(
        f"{o.obs_set}/{f.name}: {f.reason or f.status}" for o in report.obs_sets for f in o.rejected
    )


@clear_errors
def register_cmd(
    obs_set: str | None = typer.Option(None, "--obs-set", help="only this obs set"),
    instrument: str | None = typer.Option(None, help="override the manifests' instrument"),
) -> None:
    """Register archived raw files (mosaic, CCD and amplifier rows) not registered yet."""
    from surveydm.pipelines.register import register_obs_set, unregistered_obs_sets

    reg = registry()
    archive = _archive()
    sets = [obs_set] if obs_set else unregistered_obs_sets(reg)
    table = Table(title="register")
    table.add_column("obs set", no_wrap=True)
    for col in ("registered", "already", "not archived", "rejected"):
        table.add_column(col)
    rejections: list[str] = []
    with _Bars() as bars:
        for name in sets:

            def prog(fname: str, done: int, total: int, _n: str = name) -> None:
                from surveydm.pipelines.transfer import ProgressEvent

                bars(ProgressEvent("register", _n, fname, done, total))

            rr = register_obs_set(reg, archive, name, instrument, progress=prog)
            rejections += [f"{name}/{f}: {why}" for f, why in rr.rejected]
            table.add_row(
                name,
                str(len(rr.registered)),
                str(len(rr.already)),
                str(len(rr.not_archived)),
                "\n".join(f"{f}: {why}" for f, why in rr.rejected),
            )
    if not sets:
        console.print("nothing to register")
        return
    console.print(table)
    exit_if_rejected(rejections)


@clear_errors
def ingest_cmd(
    buffer_dir: Path = typer.Argument(..., help="observatory buffer: one directory per obs set"),
    instrument: str | None = typer.Option(None, help="override the manifests' instrument"),
    settle: float = typer.Option(300.0, help="seconds a short file must be quiet to be truncated"),
) -> None:
    """Transfer and register a night; exit status 1 when anything was rejected (each rejected
    file is named with its reason on stderr)."""
    from surveydm.pipelines.ingest import ingest

    reg = registry()
    with _Bars() as bars:
        report = ingest(
            reg,
            _archive(),
            buffer_dir,
            instrument=instrument,
            settle_seconds=settle,
            progress=bars,
        )
    table = Table(title=f"ingest of {buffer_dir}")
    table.add_column("obs set", no_wrap=True)
    for col in ("night", "status", "archived", "copied", "registered", "rejected"):
        table.add_column(col)
    colours = {"ok": "green", "pending": "yellow", "rejected": "red", "failed": "red"}
    for s in report.summary:
        notes = [s.pending_reason] if s.pending_reason else []
        notes += [f"{name} ({stage}): {why}" for name, stage, why in s.rejected]
        table.add_row(
            s.obs_set,
            s.night.isoformat() if s.night else "",
            f"[{colours.get(s.status, 'white')}]{s.status}[/]",
            str(s.archived),
            f"{s.copied} ({_mib(s.bytes_copied)})",
            f"{s.registered} new, {s.already_registered} before",
            "\n".join(notes),
        )
    console.print(table)
    tr = report.transfer
    console.print(
        f"transfer: {tr.files_copied} file(s), {_mib(tr.bytes_copied)} in {tr.elapsed_s:.1f} s "
        f"({tr.mib_per_s:,.1f} MiB/s); {report.n_rejected} file(s) rejected; total "
        f"{report.elapsed_s:.1f} s"
    )
    exit_if_rejected(
        f"{s.obs_set}/{name} ({stage}): {why}"
        for s in report.summary
        for name, stage, why in s.rejected
    )


@archive_app.command("verify")
@clear_errors
def verify_cmd(
    obs_set: str | None = typer.Option(None, "--obs-set", help="only this obs set's files"),
    prefix: str | None = typer.Option(None, help="only archive paths starting with this"),
) -> None:
    """Re-read archived files and report any whose size or checksum no longer matches."""
    from surveydm.pipelines.verify import verify_archive

    reg = registry()
    with _Bars() as bars:
        report = verify_archive(reg, _archive(), obs_set=obs_set, path_prefix=prefix, progress=bars)
    for path in report.restored:
        console.print(f"[green]matches again[/] {path}")
    for path in report.temporaries_removed:
        console.print(f"[yellow]removed temporary of a killed writer[/] {path}")
    for path in report.temporaries_live:
        console.print(f"being written {path}")
    console.print(
        f"{report.checked} file(s) checked, {_mib(report.bytes_read)} read: "
        f"{len(report.corrupt)} corrupt, {len(report.missing)} missing; md5 recorded for "
        f"{len(report.md5_recorded)} file(s) that had none; "
        f"{len(report.temporaries_removed)} stale temporary file(s) removed"
    )
    exit_if_rejected(
        [f"{path}: corrupt (size or checksum differs from the registry)" for path in report.corrupt]
        + [f"{path}: missing" for path in report.missing]
    )


def register(app: typer.Typer) -> None:
    """Add ``transfer``, ``register``, ``ingest`` and ``archive`` to ``app``."""
    app.command("transfer")(transfer)
    app.command("register")(register_cmd)
    app.command("ingest")(ingest_cmd)
    app.add_typer(archive_app, name="archive")
