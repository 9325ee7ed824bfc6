"""``surveydm db``: schema migrations of the registry."""

from __future__ import annotations

import typer

from surveydm.cli.common import clear_errors, console, settings

db_app = typer.Typer(help="Registry schema: migrate and inspect.", no_args_is_help=True)


@db_app.command("upgrade")
@clear_errors
def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Migrate the registry to REVISION (default: newest)."""
    from surveydm.db.migrate import current
    from surveydm.db.migrate import upgrade as run_upgrade

    url = settings().resolved_database_url
    run_upgrade(url, revision)
    console.print(f"registry at revision [bold]{current(url)}[/]")


@db_app.command("current")
@clear_errors
def show_current() -> None:
    """Print the registry's revision and the newest one shipped."""
    from surveydm.db.migrate import current, head

    url = settings().resolved_database_url
    console.print(f"current: {current(url) or '(empty database)'}\nhead:    {head()}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
