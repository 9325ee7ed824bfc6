"""Human validity flags and their history (seed 003: the user's ``is_valid`` apart from the
system's ``quality_flags``).

A product's current flag is ``product.validity`` (``bad``, ``ok`` or ``qualified``; seed 003's
0, 1 and 2) with ``product.valid`` = not bad, which calibration selection reads. Every change is
one ``validity_flag`` row saying who set what, when and why; an undo is a new row that names the
row it undoes, so the history is never rewritten.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from surveydm.db.base import Base, BigIntPK, utcnow


class ValidityFlag(Base):
    """One change of a product's human validity flag."""

    __tablename__ = "validity_flag"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id"), index=True, comment="product flagged"
    )
    validity: Mapped[str] = mapped_column(String(16), comment="bad, ok or qualified (set)")
    previous: Mapped[str] = mapped_column(String(16), comment="the flag it replaced")
    reason: Mapped[str] = mapped_column(Text, default="", comment="why, in the author's words")
    author: Mapped[str] = mapped_column(String(128), comment="who set it")
    time: Mapped[datetime] = mapped_column(default=utcnow, comment="when it was set (UTC)")
    undoes_id: Mapped[int | None] = mapped_column(
        ForeignKey("validity_flag.id"), comment="the change this row undoes, if an undo"
    )
