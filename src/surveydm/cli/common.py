"""Shared CLI plumbing: settings, registry handle, console, and clear error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from rich.console import Console

from surveydm.config import ConfigError, Settings, load_settings
from surveydm.errors import SurveydmError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def settings() -> Settings:
    """The resolved settings (TOML file + ``SURVEYDM_*`` environment)."""
    return load_settings()


def registry(upgrade: bool = True):  # noqa: ANN201
    """Open the configured registry, migrating it to the newest schema first by default."""
    from surveydm.db import Registry
    from surveydm.db.migrate import upgrade as migrate_upgrade

    s = settings()
    url = s.resolved_database_url
    if upgrade:
        migrate_upgrade(url)
    return Registry(url)


@contextmanager
def registry_session(*, write: bool = True) -> Iterator[Session]:
    """One session of the configured (migrated) registry for a command: committed on success
    when ``write``, and the registry's connections closed however the block ends."""
    reg = registry()
    try:
        with reg.session(write=write) as s:
            yield s
    finally:
        reg.dispose()


#: Exit status of a command that ran but rejected some of its input (each named on stderr).
EXIT_REJECTED = 1
#: Exit status of a command that could not run: bad invocation, configuration or input.
EXIT_ERROR = 2


def exit_if_rejected(rejections: Iterable[str]) -> None:
    """Print each rejected input as one line ``rejected: <what>: <why>`` on stderr and exit
    with :data:`EXIT_REJECTED` when there is any; return when there is none."""
    lines = list(rejections)
    for line in lines:
        err_console.print(f"[bold red]rejected:[/] {line}", soft_wrap=True, highlight=False)
    if lines:
        raise typer.Exit(EXIT_REJECTED)


def clear_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into a one-line message and exit status :data:`EXIT_ERROR`
    (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (SurveydmError, ConfigError, FileNotFoundError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper
