"""Who may read and change what (seed 003 "contexts / privileges"; seed 001 protects each
catalogue version with HTTP authentication): users with a role, their API tokens and portal
sessions (only SHA-256 digests of the secrets are stored), and the proprietary data releases
each user was granted.

Roles, from least to most: ``reader`` (public releases and the releases granted),
``curator`` (every release and the unreleased data; sets validity flags), ``admin`` (as a
curator; manages users on the command line).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from surveydm.db.base import Base, BigIntPK, utcnow


class PortalUser(Base):
    """A user of the portal and its APIs: a name, a role and whether the account is active."""

    __tablename__ = "portal_user"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, comment="login name")
    role: Mapped[str] = mapped_column(String(16), comment="reader, curator or admin")
    active: Mapped[bool] = mapped_column(Boolean, default=True, comment="false: cannot log in")
    created: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token of a user: the SHA-256 digest of the secret (the secret itself is shown
    once, when issued), a label, and when it was made, last used, expires or was revoked."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_user.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, comment="sha256 of the token")
    label: Mapped[str] = mapped_column(String(128), default="", comment="what it is for")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column()
    expires: Mapped[datetime | None] = mapped_column(comment="null: never")
    revoked: Mapped[datetime | None] = mapped_column(comment="null: in use")


class WebSession(Base):
    """A portal login (browser cookie): the SHA-256 digest of the cookie's secret, its user and
    its lifetime. Logging out deletes the row."""

    __tablename__ = "web_session"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True, comment="sha256 of cookie")
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_user.id"), index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    expires: Mapped[datetime] = mapped_column()


class ReleaseAccess(Base):
    """A proprietary data release a user may read."""

    __tablename__ = "release_access"

    release_id: Mapped[int] = mapped_column(ForeignKey("data_release.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_user.id"), primary_key=True, index=True)
    granted_by: Mapped[str] = mapped_column(String(128), comment="who granted it")
    created: Mapped[datetime] = mapped_column(default=utcnow)
