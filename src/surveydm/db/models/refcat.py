"""Reference catalogs kept in the registry, as PAUdb keeps Gaia, SDSS and others (seed 000
table .5). One ``refcat`` row per loaded catalog, its sources with a HEALPix index, and one
magnitude row per source and band, so that the pipeline selects a sky region by index ranges
and a band by key, on any engine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from surveydm.db.base import Base, BigIntPK, utcnow


class RefCat(Base):
    """A loaded reference catalog."""

    __tablename__ = "refcat"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, comment="e.g. gaia-dr3-sim")
    description: Mapped[str | None] = mapped_column(Text)
    source_file: Mapped[str | None] = mapped_column(String(512), comment="file it was loaded from")
    epoch: Mapped[float] = mapped_column(Float, default=2016.0, comment="epoch of positions, yr")
    bands: Mapped[str] = mapped_column(Text, default="", comment="comma-separated band names")
    n_sources: Mapped[int] = mapped_column(BigInteger, default=0)
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("product.id"), comment="lineage: products calibrated against it point here"
    )
    created: Mapped[datetime] = mapped_column(default=utcnow)


class RefCatSource(Base):
    """One reference source: position at the catalog epoch, proper motion and errors."""

    __tablename__ = "refcat_source"
    __table_args__ = (Index(None, "refcat_id", "healpix"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    refcat_id: Mapped[int] = mapped_column(ForeignKey("refcat.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(BigInteger, comment="identifier in the catalog")
    ra: Mapped[float] = mapped_column(Float, comment="deg, ICRS, at refcat.epoch")
    dec: Mapped[float] = mapped_column(Float, comment="deg, ICRS, at refcat.epoch")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix index, order 16")
    pmra: Mapped[float | None] = mapped_column(Float, comment="mas/yr, includes cos(dec)")
    pmdec: Mapped[float | None] = mapped_column(Float, comment="mas/yr")
    ra_error: Mapped[float | None] = mapped_column(Float, comment="mas")
    dec_error: Mapped[float | None] = mapped_column(Float, comment="mas")


class RefCatMagnitude(Base):
    """Magnitude of one reference source in one band."""

    __tablename__ = "refcat_magnitude"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("refcat_source.id", ondelete="CASCADE"), primary_key=True
    )
    band: Mapped[str] = mapped_column(String(32), primary_key=True, comment="filter name")
    mag: Mapped[float] = mapped_column(Float, comment="AB mag")
    mag_error: Mapped[float | None] = mapped_column(Float, comment="mag")
