"""Entry point of the ``surveydm`` command. Each command group lives in its own module with a
``register(app)`` function; this module only assembles them."""

from __future__ import annotations

import typer

from surveydm import __version__
from surveydm.cli import (
    coadd,
    db,
    ingest,
    jobs,
    lineage,
    memba,
    night,
    serve,
    simulate,
    users,
)

app = typer.Typer(
    name="surveydm",
    help="Data management for astronomical imaging surveys.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"surveydm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """surveydm: ingest, archive, reduce and publish survey data."""


for module in (db, simulate, ingest, jobs, night, memba, coadd, serve, lineage, users):
    module.register(app)
