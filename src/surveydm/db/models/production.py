"""Productions and data lineage (seed 000 table .1 ``production``; seed 003 full lineage).

A production is one processing campaign of one pipeline: code version + configuration + release.
Every product (a file or a set of catalog rows made by a job) belongs to one production and
records the products it was made from, so any result can be traced back to its raw files and
calibrations, and everything made from a bad input can be found for reprocessing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from surveydm.db.base import Base, BigIntPK, utcnow
from surveydm.db.expressions import obs_set_key


class Production(Base):
    """One processing production: pipeline + release + software version + configuration."""

    __tablename__ = "production"
    __table_args__ = (UniqueConstraint("pipeline", "release", "software_version", "config_hash"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64), comment="pipeline name, e.g. nightly")
    release: Mapped[str] = mapped_column(String(64), comment="data release the products go to")
    software_version: Mapped[str] = mapped_column(String(64), comment="surveydm version")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="pipeline configuration")
    config_hash: Mapped[str] = mapped_column(String(64), comment="sha256 of canonical config")
    input_production_id: Mapped[int | None] = mapped_column(
        ForeignKey("production.id"), comment="production whose products this one consumes"
    )
    job_id: Mapped[int | None] = mapped_column(BigInteger, comment="job that opened it")
    comments: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)

    input_production: Mapped[Production | None] = relationship(remote_side=[id])


class Product(Base):
    """A data product: one file in the archive or one logical set of catalog rows.

    ``data_id`` holds the dimensions that identify it (obs set, mosaic, CCD, filter, tile...).
    ``validity`` is the human validity flag (seed 003 ``is_valid``: bad, ok, qualified; its
    history in ``validity_flag``), ``valid`` is ``validity != 'bad'``; ``quality`` the system
    flag, a :class:`~surveydm.orchestration.qc.QCResult` value (the worst QC check of its job).
    """

    __tablename__ = "product"
    __table_args__ = (Index(None, "product_type", "production_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4, unique=True)
    product_type: Mapped[str] = mapped_column(String(64), comment="raw, master_bias, ...")
    data_id: Mapped[dict[str, Any]] = mapped_column(default=dict)
    production_id: Mapped[int | None] = mapped_column(ForeignKey("production.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger, index=True, comment="job that made it")
    file_id: Mapped[int | None] = mapped_column(ForeignKey("archive_file.id"), index=True)
    quality: Mapped[str] = mapped_column(
        String(16),
        default="pass",
        comment="worst QC result of the job that made it: pass, warn, fail",
    )
    valid: Mapped[bool] = mapped_column(default=True, comment="human validity flag")
    validity: Mapped[str] = mapped_column(
        String(16),
        default="ok",
        server_default="ok",
        comment="human validity flag: bad, ok or qualified (valid = not bad)",
    )
    created: Mapped[datetime] = mapped_column(default=utcnow)

    inputs: Mapped[list[ProductInput]] = relationship(
        foreign_keys="ProductInput.product_id", cascade="all, delete-orphan"
    )


#: A night's products by the data ID's obs set (migration 0010_lineage; the stale listing).
Index("ix_product_obs_set", obs_set_key(Product.data_id))


class ProductInput(Base):
    """Lineage edge: ``product_id`` was made from ``input_id`` (with the input's role)."""

    __tablename__ = "product_input"

    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), primary_key=True)
    input_id: Mapped[int] = mapped_column(ForeignKey("product.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(32), default="input", comment="raw, bias, flat...")
