"""What every request handler of the portal shares: the :class:`Portal` (settings, registry,
archive root, SQL browser, templates), the 404 error, and form-date parsing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from surveydm import __version__
from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.publish.sqlbrowser import SqlBrowser
from surveydm.publish.web.auth import csrf_token, current_user


class PageNotFound(SurveydmError):
    """A job, file, exposure or page that does not exist (HTTP 404)."""

    http_status = 404


@dataclass
class Portal:
    """What the request handlers share: settings, registry, archive root, SQL browser."""

    settings: Settings
    registry: Registry
    archive_root: Path
    sql: SqlBrowser | None
    sql_error: str | None
    templates: Jinja2Templates

    def render(self, request: Request, name: str, **context: Any) -> HTMLResponse:
        """Render template ``name`` with ``context`` (plus the request, the version, the
        caller and its CSRF token for forms that change something)."""
        base = {
            "version": __version__,
            "engine": self.registry.dialect,
            "user": current_user(request),
            "csrf": csrf_token(request),
        }
        return self.templates.TemplateResponse(request, name, {**base, **context})


def portal(request: Request) -> Portal:
    """The :class:`Portal` of the app serving ``request``."""
    return request.app.state.portal


def parse_when(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    """Parse a form date (``YYYY-MM-DD``) or ISO timestamp into an aware UTC datetime.

    An empty value gives None; a bare date means its start (or its end with ``end_of_day``).

    Raises:
        SurveydmError: the value is neither a date nor an ISO timestamp.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime.combine(d, time.max if end_of_day else time.min, tzinfo=UTC)
        t = datetime.fromisoformat(value)
    except ValueError:
        raise SurveydmError(f"not a date (YYYY-MM-DD) or ISO time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
