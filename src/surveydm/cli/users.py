"""``surveydm users``: portal and API users, their roles and tokens, and the proprietary data
releases each may read (:mod:`surveydm.db.access`)."""

from __future__ import annotations

import getpass

import typer
from rich.table import Table

from surveydm.cli.common import clear_errors, console, registry_session

users_app = typer.Typer(
    help="Users of the portal and APIs: roles, API tokens, release grants.",
    no_args_is_help=True,
)


@users_app.command("add")
@clear_errors
def users_add(
    name: str = typer.Argument(..., help="login name"),
    role: str = typer.Option("reader", "--role", help="reader, curator or admin"),
    token: bool = typer.Option(True, "--token/--no-token", help="issue a first API token"),
) -> None:
    """Create a user (and print its first API token, shown only now)."""
    from surveydm.db.access import add_user, issue_token

    with registry_session() as s:
        user = add_user(s, name, role)
        secret = issue_token(s, name, label="first") if token else None
        shown = (user.name, user.role)
    console.print(f"user {shown[0]} ({shown[1]}) created")
    if secret:
        typer.echo(secret)


@users_app.command("token")
@clear_errors
def users_token(
    name: str = typer.Argument(...),
    label: str = typer.Option("", "--label", help="what the token is for"),
    days: float | None = typer.Option(None, "--days", help="valid for this many days"),
    revoke: bool = typer.Option(False, "--revoke", help="revoke every token instead"),
) -> None:
    """Issue a new API token of a user (printed once; only its digest is kept), or revoke
    them all (``--revoke``)."""
    from surveydm.db.access import issue_token, revoke_tokens

    with registry_session() as s:
        if revoke:
            n = revoke_tokens(s, name)
        else:
            secret = issue_token(s, name, label=label, days=days)
    if revoke:
        console.print(f"{n} token(s) of {name} revoked")
    else:
        typer.echo(secret)


@users_app.command("role")
@clear_errors
def users_role(name: str = typer.Argument(...), role: str = typer.Argument(...)) -> None:
    """Change a user's role (reader, curator, admin)."""
    from surveydm.db.access import set_role

    with registry_session() as s:
        set_role(s, name, role)
    console.print(f"{name} is now {role}")


@users_app.command("disable")
@clear_errors
def users_disable(name: str = typer.Argument(...)) -> None:
    """Disable a user: its tokens and portal sessions stop working at once."""
    from surveydm.db.access import deactivate

    with registry_session() as s:
        deactivate(s, name)
    console.print(f"{name} disabled")


@users_app.command("grant")
@clear_errors
def users_grant(name: str = typer.Argument(...), release: str = typer.Argument(...)) -> None:
    """Let a user read a proprietary data release."""
    from surveydm.db.access import grant

    with registry_session() as s:
        grant(s, name, release, by=getpass.getuser())
    console.print(f"{name} may read {release}")


@users_app.command("revoke")
@clear_errors
def users_revoke(name: str = typer.Argument(...), release: str = typer.Argument(...)) -> None:
    """Take back a user's access to a proprietary data release."""
    from surveydm.db.access import revoke

    with registry_session() as s:
        revoke(s, name, release)
    console.print(f"{name} may no longer read {release}")


@users_app.command("list")
@clear_errors
def users_list() -> None:
    """Every user with role, state, tokens in use and releases granted."""
    from surveydm.db.access import list_users

    with registry_session(write=False) as s:
        rows = list_users(s)
    table = Table("user", "role", "active", "tokens", "releases granted", "created")
    for u in rows:
        table.add_row(u.name, u.role, "yes" if u.active else "no", str(u.tokens),
                      ", ".join(u.releases), f"{u.created:%Y-%m-%d %H:%M}")  # fmt: skip
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
