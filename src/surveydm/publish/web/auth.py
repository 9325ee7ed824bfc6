"""The portal's access control: one dependency every route goes through (GUIDE: access
control), the caller it finds, and what the caller may read.

The caller is found from ``Authorization: Bearer <API token>`` (scripts, pyvo) or from the
portal's session cookie (set by ``POST /login``); neither gives the anonymous user. Credentials
that are given but wrong (an unknown, revoked or expired token; another scheme than Bearer)
get 401, never a quiet fallback to anonymous.

Every path is in one area of :data:`AREAS`:

* ``open``: the front page, health, login and logout, static files;
* ``data``: lineage, productions, archive, releases: readable by anyone, each handler
  filtering by :func:`visible` (a product of a release the caller may not read is 403);
* ``operations``: jobs, nightly report, exposures, inspector, schema: the unreleased
  operations data: anyone when the installation is open, else curators;
* ``query``: the SQL browser, which runs SQL on every table: only callers who may read every
  release and the unreleased data;
* ``tap``: TAP, open to every caller: its queries read the published tables through the
  caller's row filters (publish/vo/tap/access.py) and its jobs are seen by their owner.

An *open* installation (the default, the laptop demo) lets anonymous callers read the
unreleased data; a *closed* one (``SURVEYDM_PORTAL_ACCESS=closed``) only the public releases.
Changing requests (flags) need a curator and, with a session cookie, the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import StrEnum
from typing import Annotated, NoReturn

from fastapi import Depends, Request
from sqlalchemy import func, select

from surveydm.db.access import (
    ANONYMOUS,
    Role,
    User,
    VisibleReleases,
    user_of_session,
    user_of_token,
    visible_releases,
)
from surveydm.db.models.release import DataRelease
from surveydm.errors import SurveydmError

SESSION_COOKIE = "surveydm_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class AccessPolicy(StrEnum):
    """Whether anonymous callers read the unreleased data (open) or only public releases."""

    OPEN = "open"
    CLOSED = "closed"

    @classmethod
    def from_env(cls) -> AccessPolicy:
        """``SURVEYDM_PORTAL_ACCESS`` (open or closed; default open).

        Raises:
            SurveydmError: another value."""
        raw = os.environ.get("SURVEYDM_PORTAL_ACCESS", "open").strip().lower() or "open"
        try:
            return cls(raw)
        except ValueError:
            raise SurveydmError(f"SURVEYDM_PORTAL_ACCESS={raw!r}: use 'open' or 'closed'") from None


class Unauthorized(SurveydmError):
    """No credentials, or wrong ones, where they are needed (HTTP 401)."""

    http_status = 401


class Forbidden(SurveydmError):
    """The caller's role or releases do not allow it (HTTP 403)."""

    http_status = 403


#: Path prefixes of each area (the longest match wins; unknown paths are ``operations``).
AREAS: dict[str, str] = {
    "/": "open",
    "/api/health": "open",
    "/api/whoami": "open",
    "/login": "open",
    "/logout": "open",
    "/static": "open",
    "/openapi.json": "open",
    "/lineage": "data",
    "/api/lineage": "data",
    "/productions": "data",
    "/api/productions": "data",
    "/archive": "data",
    "/api/archive": "data",
    "/releases": "data",
    "/api/releases": "data",
    "/api/flags": "data",
    "/sql": "query",
    "/api/sql": "query",
    "/tap": "tap",
}


def area_of(path: str) -> str:
    """The area of a request path (see :data:`AREAS`)."""
    best, area = -1, "operations"
    for prefix, name in AREAS.items():
        matches = path == prefix or (prefix != "/" and path.startswith(prefix.rstrip("/") + "/"))
        if matches and len(prefix) > best:
            best, area = len(prefix), name
    return area


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <token>' (see `surveydm users token`)")
    return token.strip()


def identify(request: Request) -> User:
    """The caller of ``request`` (see the module docstring).

    Raises:
        Unauthorized: a token was given that is unknown, revoked or expired.
    """
    portal = request.app.state.portal
    token = _bearer(request)
    if token is not None:
        with portal.registry.session() as s:
            user = user_of_token(s, token)
        if user is None:
            raise Unauthorized("invalid, revoked or expired API token")
        request.state.via_cookie = False
        return user
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with portal.registry.session(write=False) as s:
            user = user_of_session(s, cookie)
        if user is not None:
            request.state.via_cookie = True
            return user
    request.state.via_cookie = False
    return ANONYMOUS


def gate(request: Request) -> None:
    """The dependency of every route: find the caller, then allow the path's area or raise
    401 (anonymous where a login is needed) / 403 (a logged-in caller without the rights)."""
    user = identify(request)
    request.state.user = user
    area = area_of(request.url.path)
    if area in ("open", "data", "tap"):
        return
    if area == "operations":
        if request.app.state.access == AccessPolicy.OPEN or user.has(Role.CURATOR):
            return
        deny(user, "the operations pages are for curators")
    vis = visible(request)
    if vis.everything or (vis.unreleased and not _hidden_releases(request, vis)):
        return
    deny(user, "the SQL browser reads every release: for curators while some release is "
          "not readable by you (TAP shows you the rows you may read)")  # fmt: skip


def _hidden_releases(request: Request, vis: VisibleReleases) -> bool:
    """Some data release is not readable by the caller."""
    with request.app.state.portal.registry.session(write=False) as s:
        return (s.scalar(select(func.count()).select_from(DataRelease)) or 0) > len(vis.release_ids)


def deny(user: User, why: str) -> NoReturn:
    """Raise 401 for an anonymous caller (a login may help), 403 for a logged-in one."""
    if user.anonymous:
        raise Unauthorized(f"log in first: {why}")
    raise Forbidden(f"{user.name} ({user.role}): {why}")


def current_user(request: Request) -> User:
    """The caller found by :func:`gate` (anonymous if the gate did not run)."""
    return getattr(request.state, "user", ANONYMOUS)


def visible(request: Request) -> VisibleReleases:
    """What the caller may read (computed once per request)."""
    cached = getattr(request.state, "visible", None)
    if cached is None:
        portal = request.app.state.portal
        with portal.registry.session(write=False) as s:
            cached = visible_releases(
                s,
                current_user(request),
                open_unreleased=request.app.state.access == AccessPolicy.OPEN,
            )
        request.state.visible = cached
    return cached


def csrf_token(request: Request) -> str | None:
    """The CSRF token of the caller's portal session (an HMAC of the cookie's secret; stored
    nowhere), or None without a session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or not getattr(request.state, "via_cookie", False):
        return None
    return hmac.new(cookie.encode(), b"surveydm-csrf", hashlib.sha256).hexdigest()


def require_role(role: Role):  # noqa: ANN201 (a dependency factory)
    """A dependency allowing only callers with at least ``role`` (401 anonymous, 403 else)."""

    def dependency(request: Request) -> User:
        user = current_user(request)
        if not user.has(role):
            deny(user, f"needs the {role} role")
        return user

    return dependency


def check_csrf(request: Request, submitted: str | None) -> None:
    """For a changing request authenticated by the session cookie, the form's (or the
    ``X-CSRF-Token`` header's) token must be the session's (403 otherwise); Bearer requests
    carry no ambient credential and need none."""
    expected = csrf_token(request)
    if expected is None:
        return
    given = submitted or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(expected, given):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


CuratorUser = Annotated[User, Depends(require_role(Role.CURATOR))]
