"""Logging in and out of the portal, and who the caller is.

``POST /login`` takes a user name and one of the user's API tokens (``surveydm users token``)
and sets an HttpOnly, SameSite=Strict session cookie (the registry keeps only its digest);
``POST /logout`` ends the session. ``/api/whoami`` says who the caller is and which releases
it may read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from surveydm.db.access import close_session, open_session, user_of_token
from surveydm.publish.web.auth import SESSION_COOKIE, check_csrf, current_user, visible
from surveydm.publish.web.portal import Portal, portal

router = APIRouter()
SESSION_HOURS = 12.0


class WhoAmI(BaseModel):
    """The caller: name, role (null: anonymous), the releases it may read, whether it reads
    the unreleased data, and the installation's access policy (open or closed)."""

    name: str
    role: str | None
    releases: list[str]
    unreleased: bool
    everything: bool
    access: str


@router.get("/api/whoami", response_model=WhoAmI, tags=["portal"])
def api_whoami(request: Request) -> WhoAmI:
    """Who the caller is and what it may read."""
    user, vis = current_user(request), visible(request)
    return WhoAmI(
        name=user.name,
        role=user.role,
        releases=sorted(vis.names),
        unreleased=vis.unreleased,
        everything=vis.everything,
        access=str(request.app.state.access),
    )


def _local(target: str) -> str:
    """Only a path on this site (no scheme, no host, no ``//``): no open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def page_login(
    request: Request, p: Annotated[Portal, Depends(portal)], next: str = "/"
) -> HTMLResponse:
    return p.render(request, "login.html", next=_local(next), failed=False)


@router.post("/login", include_in_schema=False)
def post_login(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    name: Annotated[str, Form()],
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    with p.registry.session() as s:
        user = user_of_token(s, token.strip())
        if user is None or user.name != name.strip():
            user = None
        else:
            secret = open_session(s, user.id, hours=SESSION_HOURS)  # type: ignore[arg-type]
    if user is None:
        resp = p.render(request, "login.html", next=_local(next), failed=True)
        resp.status_code = 401
        return resp
    resp = RedirectResponse(_local(next), status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_HOURS * 3600),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return resp


@router.post("/logout", include_in_schema=False)
def post_logout(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and getattr(request.state, "via_cookie", False):
        check_csrf(request, csrf_token)
        with p.registry.session() as s:
            close_session(s, cookie)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
