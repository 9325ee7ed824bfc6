"""Access control in the registry: users and roles, API tokens and portal sessions, and which
data releases a user may read (seed 003 "contexts / privileges"; seed 001 protects each
catalogue version with HTTP authentication; issue 16: publication and access control work by
release).

Secrets (API tokens, session cookies) are 256-bit random strings from :mod:`secrets`; only their
SHA-256 digest is stored, so a copy of the registry (or the SQL browser) gives no credential.
A slow password hash is not needed for such high-entropy secrets.

What a user may read is a :class:`VisibleReleases`, the one answer every reader of release data
asks (the portal here; TAP and the SQL browser through :func:`visible_releases` and
:meth:`VisibleReleases.production_clause`):

* a product belongs to its production; a production frozen in a data release is readable when
  one of its releases is ``public`` or granted to the user;
* unreleased data (productions in no release, raw files, loaded catalogs) is readable by
  curators and admins, and by everyone when the installation is *open* (the laptop default);
* curators and admins read every release.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, false, or_, select, true
from sqlalchemy.orm import Session

from surveydm.db.models.access import ApiToken, PortalUser, ReleaseAccess, WebSession
from surveydm.db.models.production import Product
from surveydm.db.models.release import DataRelease, ReleaseProduction
from surveydm.errors import SurveydmError


class Role(StrEnum):
    """A user's role, from least to most allowed."""

    READER = "reader"
    CURATOR = "curator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 reader, 1 curator, 2 admin."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """True when this role has at least the rights of ``needed``."""
        return self.rank >= Role(needed).rank


class Visibility(StrEnum):
    """Who reads a data release."""

    PUBLIC = "public"
    PROPRIETARY = "proprietary"


class AccessError(SurveydmError):
    """A user, token or grant that cannot be made or found (says why)."""


@dataclass(frozen=True)
class User:
    """The caller of a request: id, name and role (None id: anonymous)."""

    id: int | None
    name: str
    role: Role | None

    @property
    def anonymous(self) -> bool:
        """No credentials were given."""
        return self.id is None

    def has(self, role: Role) -> bool:
        """True when the user is logged in with at least ``role``."""
        return self.role is not None and Role(self.role).allows(role)


ANONYMOUS = User(None, "anonymous", None)


@dataclass(frozen=True)
class UserInfo:
    """A user as listed: name, role, active, tokens in use, releases granted (names)."""

    name: str
    role: str
    active: bool
    created: datetime
    tokens: int
    releases: tuple[str, ...]


@dataclass(frozen=True)
class VisibleReleases:
    """What a user may read.

    Attributes:
        everything: curator or admin: every release and the unreleased data.
        release_ids, names: the data releases readable (public ones and those granted).
        unreleased: productions in no release, raw files and loaded catalogs are readable.
    """

    everything: bool
    release_ids: frozenset[int]
    names: frozenset[str]
    unreleased: bool

    def production_clause(self, production_id: Any) -> ColumnElement[bool]:
        """A SQL condition on a production id column (e.g. ``Product.production_id``) true for
        the rows this user may read; NULL (no production) counts as unreleased."""
        if self.everything:
            return true()
        in_any = exists().where(ReleaseProduction.production_id == production_id)
        in_visible = (
            exists().where(
                ReleaseProduction.production_id == production_id,
                ReleaseProduction.release_id.in_(sorted(self.release_ids)),
            )
            if self.release_ids
            else false()
        )
        if self.unreleased:
            return or_(production_id.is_(None), ~in_any, in_visible)
        return in_visible

    def file_clause(self, file_id: Any) -> ColumnElement[bool]:
        """A SQL condition on an archive file id column true for the files this user may read:
        a file of a readable product, or (with the unreleased data) a file of no product."""
        if self.everything:
            return true()
        readable = exists().where(
            Product.file_id == file_id, self.production_clause(Product.production_id)
        )
        if self.unreleased:
            return or_(readable, ~exists().where(Product.file_id == file_id))
        return readable

    def readable_products(self, session: Session, ids: set[int]) -> set[int]:
        """The subset of the product ids ``ids`` this user may read (one query)."""
        if self.everything or not ids:
            return set(ids)
        return set(
            session.scalars(
                select(Product.id).where(
                    Product.id.in_(sorted(ids)), self.production_clause(Product.production_id)
                )
            )
        )


def digest(secret: str) -> str:
    """SHA-256 hex digest of a token or session secret (what the registry stores)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def add_user(session: Session, name: str, role: Role | str) -> PortalUser:
    """Create a user.

    Raises:
        AccessError: an empty or taken name, or an unknown role.
    """
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise AccessError(f"not a user name: {name!r} (1-64 characters, no spaces)")
    try:
        role = Role(role)
    except ValueError:
        raise AccessError(f"unknown role {role!r} (use {', '.join(Role)})") from None
    if session.scalar(select(PortalUser.id).where(PortalUser.name == name)) is not None:
        raise AccessError(f"user {name!r} exists")
    user = PortalUser(name=name, role=role, active=True)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> PortalUser:
    """The user named ``name``.

    Raises:
        AccessError: no such user.
    """
    user = session.scalar(select(PortalUser).where(PortalUser.name == name))
    if user is None:
        raise AccessError(f"no user {name!r} (see `surveydm users list`)")
    return user


def set_role(session: Session, name: str, role: Role | str) -> None:
    """Change a user's role. Raises AccessError for an unknown user or role."""
    user = get_user(session, name)
    try:
        user.role = Role(role)
    except ValueError:
        raise AccessError(f"unknown role {role!r} (use {', '.join(Role)})") from None


def deactivate(session: Session, name: str) -> None:
    """Disable a user: its tokens and sessions stop working at once (rows kept)."""
    user = get_user(session, name)
    user.active = False
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))


def issue_token(session: Session, name: str, *, label: str = "", days: float | None = None) -> str:
    """A new API token of user ``name`` (returned once; only its digest is stored), valid for
    ``days`` (None: until revoked). Raises AccessError for an unknown user."""
    user = get_user(session, name)
    secret = "sdm_" + secrets.token_urlsafe(32)
    expires = None if days is None else datetime.now(UTC) + timedelta(days=days)
    session.add(ApiToken(user_id=user.id, digest=digest(secret), label=label, expires=expires))
    session.flush()
    return secret


def revoke_tokens(session: Session, name: str) -> int:
    """Revoke every token of a user in use; returns how many."""
    user = get_user(session, name)
    rows = session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(None))
    ).all()
    for row in rows:
        row.revoked = datetime.now(UTC)
    return len(rows)


def user_of_token(session: Session, secret: str) -> User | None:
    """The active user owning the API token ``secret`` (in use, not expired), or None; marks
    the token used."""
    now = datetime.now(UTC)
    row = session.execute(
        select(ApiToken, PortalUser)
        .join(PortalUser, PortalUser.id == ApiToken.user_id)
        .where(ApiToken.digest == digest(secret), ApiToken.revoked.is_(None), PortalUser.active)
    ).first()
    if row is None:
        return None
    token, user = row
    if token.expires is not None and token.expires <= now:
        return None
    token.last_used = now
    return User(user.id, user.name, Role(user.role))


def open_session(session: Session, user_id: int, *, hours: float = 12.0) -> str:
    """A new portal session for a user; returns the cookie's secret (stored as a digest)."""
    secret = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=hours)
    session.add(WebSession(digest=digest(secret), user_id=user_id, expires=expires))
    session.flush()
    return secret


def user_of_session(session: Session, secret: str) -> User | None:
    """The active user of the portal session ``secret`` (not expired), or None."""
    row = session.execute(
        select(WebSession.expires, PortalUser)
        .join(PortalUser, PortalUser.id == WebSession.user_id)
        .where(WebSession.digest == digest(secret), PortalUser.active)
    ).first()
    if row is None or row[0] <= datetime.now(UTC):
        return None
    return User(row[1].id, row[1].name, Role(row[1].role))


def close_session(session: Session, secret: str) -> None:
    """End a portal session (log out)."""
    session.execute(delete(WebSession).where(WebSession.digest == digest(secret)))


def _release(session: Session, release: str) -> DataRelease:
    rel = session.scalar(select(DataRelease).where(DataRelease.name == release))
    if rel is None:
        raise AccessError(f"no data release {release!r} (see `surveydm release show`)")
    return rel


def grant(session: Session, name: str, release: str, *, by: str) -> None:
    """Let user ``name`` read the proprietary release ``release``.

    Raises:
        AccessError: unknown user or release, or already granted.
    """
    user, rel = get_user(session, name), _release(session, release)
    if session.get(ReleaseAccess, (rel.id, user.id)) is not None:
        raise AccessError(f"{name} can already read {release}")
    session.add(ReleaseAccess(release_id=rel.id, user_id=user.id, granted_by=by))
    session.flush()


def revoke(session: Session, name: str, release: str) -> None:
    """Take back user ``name``'s access to ``release``. Raises AccessError if not granted."""
    user, rel = get_user(session, name), _release(session, release)
    row = session.get(ReleaseAccess, (rel.id, user.id))
    if row is None:
        raise AccessError(f"{name} was not granted {release}")
    session.delete(row)


def set_visibility(session: Session, release: str, visibility: Visibility | str) -> None:
    """Make a release ``public`` or ``proprietary``. Raises AccessError for an unknown one."""
    try:
        _release(session, release).visibility = Visibility(visibility)
    except ValueError:
        raise AccessError(f"unknown visibility {visibility!r} (public, proprietary)") from None


def list_users(session: Session) -> list[UserInfo]:
    """Every user with its role, tokens in use and releases granted, by name."""
    out = []
    for user in session.scalars(select(PortalUser).order_by(PortalUser.name)):
        tokens = len(
            session.scalars(
                select(ApiToken.id).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(None))
            ).all()
        )
        releases = session.scalars(
            select(DataRelease.name)
            .join(ReleaseAccess, ReleaseAccess.release_id == DataRelease.id)
            .where(ReleaseAccess.user_id == user.id)
            .order_by(DataRelease.name)
        ).all()
        out.append(UserInfo(user.name, user.role, user.active, user.created, tokens,
                            tuple(releases)))  # fmt: skip
    return out


def visible_releases(session: Session, user: User, *, open_unreleased: bool) -> VisibleReleases:
    """What ``user`` may read (see the module docstring): every release for a curator or
    admin; else the public releases and those granted to the user, and the unreleased data
    when ``open_unreleased`` (the installation is open to anonymous reading).

    This is the one function the readers of release data (portal, TAP, SQL browser) call;
    filter rows with :meth:`VisibleReleases.production_clause`."""
    if user.has(Role.CURATOR):
        rows = session.execute(select(DataRelease.id, DataRelease.name)).all()
        return VisibleReleases(True, frozenset(r[0] for r in rows),
                               frozenset(r[1] for r in rows), True)  # fmt: skip
    cond = DataRelease.visibility == Visibility.PUBLIC
    if user.id is not None:
        granted = select(ReleaseAccess.release_id).where(ReleaseAccess.user_id == user.id)
        cond = or_(cond, DataRelease.id.in_(granted))
    rows = session.execute(select(DataRelease.id, DataRelease.name).where(cond)).all()
    return VisibleReleases(
        False, frozenset(r[0] for r in rows), frozenset(r[1] for r in rows), open_unreleased
    )
