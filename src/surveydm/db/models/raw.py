"""Registry models for raw data and the archive's file table (seed 000 appendix B table .1).

* :class:`Project` -- who observes (``project``).
* :class:`ObsSet` -- one observation set: contiguous exposures of one night in one directory,
  described by the DAQ's YAML manifest (``obs_set``).
* :class:`Mosaic` -- one exposure file, raw or reduced (``mosaic``), with the nightly
  pipeline's exposure-level metrics.
* :class:`Image` -- one CCD or one amplifier of a mosaic (``image``), with quick pixel
  statistics from registration and the nightly pipeline's per-CCD metrics.
* :class:`ArchiveFile` -- one file in the archive: path, size, adler32, md5, state.

Raw exposures have exactly one mosaic row (Pan-STARRS rawExp, seed 004 section 3.2): the unique
constraint on ``mosaic.archive_file_id`` makes a second registration of the same file
impossible at the database level, whichever process tries.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from surveydm.db.base import Base, BigIntPK, utcnow

#: Kinds of raw exposure files (instrument ``obstype_values`` map OBSTYPE onto these).
RAW_KINDS = ("bias", "dark", "flat", "science", "test", "focus")


class ArchiveFile(Base):
    """One file in the archive: its path relative to the archive root, size and checksums.

    ``state``: ``archived`` (verified copy in place), ``corrupt`` (a later verification found a
    checksum or size mismatch), ``missing`` (a later verification did not find it).
    """

    __tablename__ = "archive_file"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    path: Mapped[str] = mapped_column(
        String(512), unique=True, comment="path relative to the archive root"
    )
    size: Mapped[int] = mapped_column(BigInteger, comment="file size, bytes")
    adler32: Mapped[str] = mapped_column(String(8), comment="adler32 checksum, 8 lowercase hex")
    md5: Mapped[str | None] = mapped_column(
        String(32),
        comment="md5 checksum, 32 lowercase hex; NULL until the file is first read in full "
        "after the transfer (registration or verification)",
    )
    state: Mapped[str] = mapped_column(
        String(16), default="archived", index=True, comment="archived, corrupt or missing"
    )
    created: Mapped[datetime] = mapped_column(default=utcnow, comment="time archived (UTC)")
    verified: Mapped[datetime | None] = mapped_column(
        comment="time of the last successful or failed verification (UTC)"
    )


class Project(Base):
    """A project observing with the camera (seed 000 table .1 ``project``)."""

    __tablename__ = "project"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(
        String(128), unique=True, comment="project name as in the manifests"
    )
    description: Mapped[str | None] = mapped_column(Text, comment="what the project observes")
    contact_name: Mapped[str | None] = mapped_column(String(128), comment="contact person")
    contact_email: Mapped[str | None] = mapped_column(String(256), comment="contact e-mail")
    created: Mapped[datetime] = mapped_column(default=utcnow, comment="time registered (UTC)")


class InstrumentVersion(Base):
    """An instrument description as it was when first used (``instrument_version``): its YAML
    text and sha256, so that every task, on every worker, reads the camera from the registry
    and an edited file makes a new version instead of a silent mix."""

    __tablename__ = "instrument_version"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), comment="instrument name (its name field)")
    version: Mapped[int] = mapped_column(
        Integer, comment="1, 2, ... in order of first use of each distinct text of that name"
    )
    sha256: Mapped[str] = mapped_column(
        String(64), unique=True, comment="sha256 of the text, 64 lowercase hex"
    )
    text: Mapped[str] = mapped_column(Text, comment="the instrument description (YAML) as read")
    source: Mapped[str] = mapped_column(
        String(512), comment="where it was read: built-in name or file path"
    )
    created: Mapped[datetime] = mapped_column(default=utcnow, comment="time recorded (UTC)")


class ObsSet(Base):
    """An observation set: contiguous exposures of one night taken in one configuration and
    collected in one directory, described by the data acquisition's YAML manifest (seed 000
    sections 3-4; table .1 ``obs_set``)."""

    __tablename__ = "obs_set"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    obs_set: Mapped[str] = mapped_column(
        String(64), unique=True, comment="observation set identifier, e.g. 20261120_001"
    )
    night: Mapped[date] = mapped_column(
        Date, index=True, comment="date of the start of the night (local), YYYY-MM-DD"
    )
    instrument: Mapped[str] = mapped_column(
        String(128), comment="instrument description (built-in name or YAML path)"
    )
    instrument_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("instrument_version.id"),
        index=True,
        comment="the description every task of this obs set uses, fixed at first registration",
    )
    operator: Mapped[str | None] = mapped_column(String(128), comment="telescope operator")
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id"), index=True, comment="project that took the data"
    )
    comments: Mapped[str | None] = mapped_column(Text, comment="operator comments")
    mjd_start: Mapped[float | None] = mapped_column(
        Float, comment="MJD (UTC) of the first exposure"
    )
    mjd_stop: Mapped[float | None] = mapped_column(Float, comment="MJD (UTC) of the last exposure")
    notes: Mapped[str | None] = mapped_column(Text, comment="data-management notes")
    log: Mapped[str | None] = mapped_column(Text, comment="transfer and registration log")
    manifest: Mapped[dict[str, Any]] = mapped_column(
        default=dict, comment="the YAML manifest as received, as JSON"
    )
    n_files: Mapped[int] = mapped_column(
        Integer, default=0, comment="number of files listed in the manifest"
    )
    created: Mapped[datetime] = mapped_column(default=utcnow, comment="time registered (UTC)")

    project: Mapped[Project | None] = relationship()
    instrument_version: Mapped[InstrumentVersion | None] = relationship()
    mosaics: Mapped[list[Mosaic]] = relationship(back_populates="obs_set")


class Mosaic(Base):
    """One exposure file, raw or reduced (seed 000 table .1 ``mosaic``).

    Raw kinds: bias, dark, flat, science, test, focus. Reduced kind: red_science (master
    calibrations are ``calibration_frame`` rows). Metric and status columns are NULL until the
    nightly pipeline fills them; ``qc_status`` is a :class:`~surveydm.orchestration.qc.QCResult`
    value.
    """

    __tablename__ = "mosaic"
    __table_args__ = (
        UniqueConstraint("archive_file_id"),
        UniqueConstraint("parent_id", "kind", "production_id"),
        Index(None, "obs_set_id", "kind"),
        Index(None, "kind", "filter_tray"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    obs_set_id: Mapped[int] = mapped_column(
        ForeignKey("obs_set.id"), index=True, comment="observation set of the exposure"
    )
    kind: Mapped[str] = mapped_column(
        String(16),
        index=True,
        comment="bias, dark, flat, science, test, focus (raw); red_science (reduced)",
    )
    filename: Mapped[str] = mapped_column(String(256), comment="file name as in the manifest")
    archive_file_id: Mapped[int | None] = mapped_column(
        ForeignKey("archive_file.id"),
        comment="the file in the archive (path, checksums); NULL for a reduced mosaic whose "
        "CCDs are separate files",
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("mosaic.id"),
        index=True,
        comment="for a reduced mosaic: the raw mosaic it was reduced from",
    )
    exp_num: Mapped[int | None] = mapped_column(
        Integer, comment="exposure number in the obs set (1-based, manifest order)"
    )
    date_obs: Mapped[datetime | None] = mapped_column(
        index=True, comment="start of the exposure (UTC)"
    )
    mjd_obs: Mapped[float | None] = mapped_column(
        Float, comment="MJD (UTC) of the start of the exposure"
    )
    exptime: Mapped[float | None] = mapped_column(Float, comment="exposure time, s")
    filter_tray: Mapped[str | None] = mapped_column(
        String(64), index=True, comment="filter tray in the beam"
    )
    object: Mapped[str | None] = mapped_column(String(128), comment="target name")
    ra: Mapped[float | None] = mapped_column(
        Float, comment="right ascension of the field centre (ICRS), deg"
    )
    dec: Mapped[float | None] = mapped_column(
        Float, comment="declination of the field centre (ICRS), deg"
    )
    healpix: Mapped[int | None] = mapped_column(
        BigInteger, index=True, comment="HEALPix nested index, order 16, of (ra, dec)"
    )
    airmass: Mapped[float | None] = mapped_column(Float, comment="airmass at the start")
    amb_temp: Mapped[float | None] = mapped_column(Float, comment="ambient temperature, deg C")
    humidity: Mapped[float | None] = mapped_column(Float, comment="relative humidity, percent")
    pressure: Mapped[float | None] = mapped_column(Float, comment="atmospheric pressure, hPa")
    wind_spd: Mapped[float | None] = mapped_column(Float, comment="wind speed, m/s")
    wind_dir: Mapped[float | None] = mapped_column(
        Float, comment="wind direction, deg east of north"
    )
    nextend: Mapped[int | None] = mapped_column(Integer, comment="number of FITS extensions")
    instrument: Mapped[str | None] = mapped_column(String(128), comment="instrument name")
    production_id: Mapped[int | None] = mapped_column(
        ForeignKey("production.id"), index=True, comment="production that made it (reduced)"
    )
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("product.id"), index=True, comment="lineage product of this file"
    )
    # -- nightly pipeline metrics (NULL until measured) --
    median_psf_fwhm: Mapped[float | None] = mapped_column(
        Float, comment="median PSF FWHM over the CCDs, arcsec"
    )
    zp_nightly: Mapped[float | None] = mapped_column(
        Float, comment="nightly photometric zero-point, AB mag for 1 e-/s"
    )
    transparency: Mapped[float | None] = mapped_column(
        Float, comment="atmospheric transparency, fraction of the photometric flux"
    )
    sky_background: Mapped[float | None] = mapped_column(
        Float, comment="median sky background, e-/s/pixel"
    )
    astro_rms: Mapped[float | None] = mapped_column(
        Float, comment="astrometric RMS against the reference catalog, arcsec"
    )
    astro_nstars: Mapped[int | None] = mapped_column(
        Integer, comment="reference stars used in the astrometric fit"
    )
    astro_status: Mapped[str | None] = mapped_column(String(16), comment="astrometry status")
    photo_status: Mapped[str | None] = mapped_column(
        String(16), comment="photometric calibration status"
    )
    detrend_status: Mapped[str | None] = mapped_column(String(16), comment="detrending status")
    qc_status: Mapped[str | None] = mapped_column(
        String(16), index=True, comment="worst QC result of the exposure: pass, warn, fail"
    )
    comment: Mapped[str | None] = mapped_column(Text, comment="free comment")
    created: Mapped[datetime] = mapped_column(default=utcnow, comment="time registered (UTC)")

    obs_set: Mapped[ObsSet] = relationship(back_populates="mosaics")
    archive_file: Mapped[ArchiveFile | None] = relationship()
    images: Mapped[list[Image]] = relationship(
        back_populates="mosaic", cascade="all, delete-orphan", order_by="Image.id"
    )


class Image(Base):
    """One CCD (``amp_num`` NULL) or one amplifier of a mosaic (seed 000 table .1 ``image``).

    Pixel statistics come from registration (raw) or the nightly pipeline (reduced); sky bounds
    stay NULL for raw images until a WCS exists.
    """

    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("mosaic_id", "ccd_num", "amp_num"),
        # NULLs are distinct in unique constraints: a partial index keeps one CCD row per CCD.
        Index(
            "uq_image_mosaic_id_ccd_num_whole_ccd",
            "mosaic_id",
            "ccd_num",
            unique=True,
            sqlite_where=text("amp_num IS NULL"),
            postgresql_where=text("amp_num IS NULL"),
        ),
        Index(None, "filter"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    mosaic_id: Mapped[int] = mapped_column(
        ForeignKey("mosaic.id", ondelete="CASCADE"), index=True, comment="mosaic it belongs to"
    )
    ccd_num: Mapped[int] = mapped_column(Integer, comment="CCD number (instrument description)")
    amp_num: Mapped[int | None] = mapped_column(
        Integer, comment="amplifier number; NULL for a whole-CCD row"
    )
    image_num: Mapped[int | None] = mapped_column(
        Integer, comment="FITS extension index in the file (0 = primary)"
    )
    filter: Mapped[str | None] = mapped_column(String(32), comment="filter covering the CCD")
    waveband: Mapped[str | None] = mapped_column(String(16), comment="narrow or broad")
    wavelength: Mapped[float | None] = mapped_column(
        Float, comment="central wavelength of the filter, nm"
    )
    gain: Mapped[float | None] = mapped_column(Float, comment="gain, e-/ADU")
    rdnoise: Mapped[float | None] = mapped_column(Float, comment="read noise, e-")
    naxis1: Mapped[int | None] = mapped_column(Integer, comment="NAXIS1 (columns), pixels")
    naxis2: Mapped[int | None] = mapped_column(Integer, comment="NAXIS2 (rows), pixels")
    ra_min: Mapped[float | None] = mapped_column(Float, comment="minimum right ascension, deg")
    ra_max: Mapped[float | None] = mapped_column(Float, comment="maximum right ascension, deg")
    dec_min: Mapped[float | None] = mapped_column(Float, comment="minimum declination, deg")
    dec_max: Mapped[float | None] = mapped_column(Float, comment="maximum declination, deg")
    healpix: Mapped[int | None] = mapped_column(
        BigInteger, index=True, comment="HEALPix nested index, order 16, of the centre"
    )
    mean: Mapped[float | None] = mapped_column(
        Float, comment="mean of the data section (subsampled), ADU (raw) or e- (reduced)"
    )
    std: Mapped[float | None] = mapped_column(
        Float, comment="standard deviation of the data section (subsampled), same unit as mean"
    )
    overscan: Mapped[float | None] = mapped_column(
        Float, comment="median overscan level, ADU (amplifier rows; CCD rows: mean of amps)"
    )
    # -- nightly pipeline metrics (NULL until measured) --
    psf_fwhm: Mapped[float | None] = mapped_column(Float, comment="PSF FWHM, arcsec")
    bkg_mean: Mapped[float | None] = mapped_column(Float, comment="mean background, e-/pixel")
    bkg_std: Mapped[float | None] = mapped_column(
        Float, comment="background standard deviation, e-/pixel"
    )
    n_extracted: Mapped[int | None] = mapped_column(Integer, comment="sources extracted")
    zp_nightly: Mapped[float | None] = mapped_column(
        Float, comment="nightly zero-point, AB mag for 1 e-/s"
    )
    zp_nightly_err: Mapped[float | None] = mapped_column(
        Float, comment="uncertainty of zp_nightly, mag"
    )
    zp_nightly_stars: Mapped[int | None] = mapped_column(
        Integer, comment="stars used for zp_nightly"
    )
    transparency: Mapped[float | None] = mapped_column(
        Float, comment="transparency, fraction of the photometric flux"
    )
    astro_rms: Mapped[float | None] = mapped_column(Float, comment="astrometric RMS, arcsec")
    astro_nstars: Mapped[int | None] = mapped_column(
        Integer, comment="reference stars used in the astrometric fit"
    )
    cosmic_ratio: Mapped[float | None] = mapped_column(
        Float, comment="fraction of pixels flagged as cosmic rays"
    )
    saturate_ratio: Mapped[float | None] = mapped_column(
        Float, comment="fraction of saturated pixels"
    )
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("product.id"), index=True, comment="lineage product of this CCD (reduced)"
    )

    mosaic: Mapped[Mosaic] = relationship(back_populates="images")
