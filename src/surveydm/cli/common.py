"""Shared CLI plumbing: settings, registry handle, console, and clear error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from surveydm.config import ConfigError, Settings, load_settings
from surveydm.errors import SurveydmError

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


def clear_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into a one-line message and exit status 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (SurveydmError, ConfigError, FileNotFoundError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper
