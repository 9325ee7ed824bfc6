"""Data releases (seed 000 section 7.4, seed 002 data releases): a named, frozen set of
productions. Once a production is in a release it takes no new products; a validity flag set
later on one of its products is recorded as an erratum of the release instead of changing it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from surveydm.db.base import Base, BigIntPK, utcnow


class DataRelease(Base):
    """A frozen data release: its name, notes and when and by whom it was made."""

    __tablename__ = "data_release"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, comment="release name, e.g. DR1")
    notes: Mapped[str] = mapped_column(Text, default="", comment="generated release notes")
    author: Mapped[str] = mapped_column(String(128), comment="who froze it")
    created: Mapped[datetime] = mapped_column(default=utcnow, comment="when it was frozen (UTC)")
    visibility: Mapped[str] = mapped_column(
        String(16),
        default="proprietary",
        server_default="proprietary",
        comment="public (anyone) or proprietary (the users granted, curators, admins)",
    )


class ReleaseProduction(Base):
    """A production frozen in a release."""

    __tablename__ = "release_production"

    release_id: Mapped[int] = mapped_column(ForeignKey("data_release.id"), primary_key=True)
    production_id: Mapped[int] = mapped_column(
        ForeignKey("production.id"), primary_key=True, index=True
    )


class Erratum(Base):
    """A validity flag set on a product of a release after it was frozen."""

    __tablename__ = "erratum"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("data_release.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    flag_id: Mapped[int] = mapped_column(ForeignKey("validity_flag.id"))
    text: Mapped[str] = mapped_column(Text, comment="what changed and why")
    created: Mapped[datetime] = mapped_column(default=utcnow)
