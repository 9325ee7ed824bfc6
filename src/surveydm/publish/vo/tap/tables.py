"""Metadata of the tables TAP publishes, generated from the registry's SQLAlchemy models.

Each published table is a registry table (:data:`PUBLISHED`) with its columns, VOTable types,
descriptions (the models' column comments), ``indexed`` flags (the models' indexes and keys)
and foreign keys between published tables. Units and UCDs (IVOA UCD1+ list) come from
:data:`ANNOTATIONS`, keyed by column name, so that a new model column is published the moment
it exists. ``TAP_SCHEMA`` (TAP 1.1 section 4) is derived from the same objects by
:mod:`surveydm.publish.vo.tap.tap_schema`; nothing is written by hand or stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.sql.schema import Table

from surveydm.db.base import Base

#: ADQL schema of the registry's published tables.
SCHEMA = "surveydm"


def adql_name(name: str) -> str:
    """A column name as ADQL must write it: delimited (``"size"``) when it is an ADQL reserved
    word (ADQL 2.1 section 2.1.2), else as is."""
    from vo_models.adql.misc import ADQL_SQL_KEYWORDS

    return f'"{name}"' if name.upper() in ADQL_SQL_KEYWORDS else name


@dataclass(frozen=True)
class ColumnMeta:
    """One published column (TAP_SCHEMA.columns row; VOTable FIELD).

    ``datatype`` is a VOTable primitive (``double``, ``long``, ``int``, ``short``, ``float``,
    ``boolean``, ``char``); ``arraysize`` ``"*"`` for strings, ``"2"``/``"3"``/``"*"`` for
    geometry values; ``xtype`` ``timestamp``, ``point``, ``circle`` or ``polygon`` (DALI 1.1).
    """

    name: str
    datatype: str
    description: str = ""
    unit: str | None = None
    ucd: str | None = None
    arraysize: str | None = None
    xtype: str | None = None
    indexed: bool = False
    principal: bool = False


@dataclass(frozen=True)
class Position:
    """The columns of a table's position: right ascension and declination (deg, ICRS) and the
    nested HEALPix index of (ra, dec) at :data:`surveydm.db.spatial.HEALPIX_ORDER`."""

    ra: str
    dec: str
    healpix: str


@dataclass(frozen=True)
class ForeignKeyMeta:
    """A key between published tables (TAP_SCHEMA.keys + key_columns)."""

    key_id: str
    from_table: str
    target_table: str
    from_column: str
    target_column: str
    description: str = ""


@dataclass(frozen=True)
class TableMeta:
    """One table a query may name: its ADQL name (``schema.table``), the SQL relation it reads
    and its columns; ``position`` when cone constraints can use a HEALPix prefilter."""

    schema: str
    name: str
    sql_name: str
    description: str
    columns: tuple[ColumnMeta, ...]
    position: Position | None = None
    foreign_keys: tuple[ForeignKeyMeta, ...] = ()
    table_type: str = "table"

    @property
    def qualified(self) -> str:
        """``schema.table`` as written in ADQL."""
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> ColumnMeta | None:
        """The column called ``name`` (case-insensitive), or None."""
        low = name.lower()
        for col in self.columns:
            if col.name.lower() == low:
                return col
        return None


@dataclass
class Catalog:
    """Every table visible to ADQL, by lower-case qualified name."""

    tables: dict[str, TableMeta] = field(default_factory=dict)

    def add(self, table: TableMeta) -> None:
        """Make ``table`` visible under ``schema.name``."""
        self.tables[table.qualified.lower()] = table

    def find(self, parts: list[str]) -> TableMeta | None:
        """The table named by ``parts`` (``[schema, table]`` or ``[table]``), or None.

        An unqualified name resolves when exactly one schema has a table of that name.
        """
        if len(parts) == 2:
            return self.tables.get(f"{parts[0]}.{parts[1]}".lower())
        if len(parts) == 1:
            hits = [t for t in self.tables.values() if t.name.lower() == parts[0].lower()]
            return hits[0] if len(hits) == 1 else None
        return None

    @property
    def schemas(self) -> list[str]:
        """Schema names in order of first appearance."""
        return list(dict.fromkeys(t.schema for t in self.tables.values()))


@dataclass(frozen=True)
class PublishedTable:
    """A registry table TAP publishes: model table name, description, columns left out."""

    table: str
    description: str
    exclude: tuple[str, ...] = ()


#: The registry tables published through TAP, in TAP_SCHEMA order.
PUBLISHED: tuple[PublishedTable, ...] = (
    PublishedTable("obs_set", "Observation sets: contiguous exposures of one night.", ("log",)),
    PublishedTable("mosaic", "Exposures (mosaics), raw and reduced, with nightly metrics."),
    PublishedTable(
        "image",
        "CCD images (and amplifiers) of the exposures, with sky bounds and per-CCD metrics.",
    ),
    PublishedTable("detection", "Sources measured on reduced CCD images by the nightly pipeline."),
    PublishedTable("refcat", "Reference catalogs loaded into the registry."),
    PublishedTable("refcat_source", "Reference catalog sources (positions at the catalog epoch)."),
    PublishedTable(
        "refcat_magnitude", "Reference catalog magnitudes, one row per source and band."
    ),
    PublishedTable("production", "Processing productions: pipeline, release, software version."),
)

_POS_RA = ("deg", "pos.eq.ra;meta.main")
_POS_DEC = ("deg", "pos.eq.dec;meta.main")

#: Unit (VOUnit 1.0; electrons are ``ct``, photo-electron counts) and UCD (UCD1+ controlled
#: vocabulary) by column name; ``table.column`` entries win over bare ``column`` ones. A test
#: checks every entry with astropy's VOUnit and UCD parsers.
ANNOTATIONS: dict[str, tuple[str | None, str | None]] = {
    "id": (None, "meta.id;meta.main"),
    "ra": _POS_RA,
    "dec": _POS_DEC,
    "healpix": (None, "pos.healpix"),
    "ra_min": ("deg", "pos.eq.ra;stat.min"),
    "ra_max": ("deg", "pos.eq.ra;stat.max"),
    "dec_min": ("deg", "pos.eq.dec;stat.min"),
    "dec_max": ("deg", "pos.eq.dec;stat.max"),
    "mjd_obs": ("d", "time.start;obs.exposure"),
    "mjd_start": ("d", "time.start"),
    "mjd_stop": ("d", "time.end"),
    "date_obs": (None, "time.start;obs.exposure"),
    "night": (None, "time.epoch;obs"),
    "exptime": ("s", "time.duration;obs.exposure"),
    "airmass": (None, "obs.airMass"),
    "amb_temp": (None, "phys.temperature"),  # deg C: no VOUnit
    "humidity": (None, "obs.atmos.humidity"),  # percent: no VOUnit
    "pressure": ("hPa", "phys.pressure"),
    "wind_spd": ("m/s", "phys.veloc"),
    "wind_dir": ("deg", "pos.posAng"),
    "filter": (None, "meta.id;instr.filter"),
    "filter_tray": (None, "meta.id;instr.filter"),
    "band": (None, "instr.bandpass"),
    "wavelength": ("nm", "em.wl.central"),
    "gain": ("ct/adu", "instr.calib"),
    "rdnoise": ("ct", "instr.det.noise"),
    "naxis1": ("pix", "meta.number"),
    "naxis2": ("pix", "meta.number"),
    "x": ("pix", "pos.cartesian.x;instr.det"),
    "y": ("pix", "pos.cartesian.y;instr.det"),
    "mag": ("mag", "phot.mag"),
    "mag_err": ("mag", "stat.error;phot.mag"),
    "mag_error": ("mag", "stat.error;phot.mag"),
    "flux_auto": ("ct", "phot.flux"),
    "flux_psf": ("ct", "phot.flux"),
    "flux_aper": ("ct", "phot.flux"),
    "flux_err_auto": ("ct", "stat.error;phot.flux"),
    "flux_err_psf": ("ct", "stat.error;phot.flux"),
    "flux_err_aper": ("ct", "stat.error;phot.flux"),
    "background": ("ct/pix", "instr.skyLevel"),
    "fwhm": ("arcsec", "phys.angSize;instr.det.psf"),
    "psf_fwhm": ("arcsec", "phys.angSize;instr.det.psf"),
    "median_psf_fwhm": ("arcsec", "phys.angSize;instr.det.psf"),
    "elongation": (None, "src.ellipticity"),
    "class_star": (None, "src.class.starGalaxy"),
    "snr": (None, "stat.snr"),
    "flags": (None, "meta.code"),
    "pmra": ("mas/yr", "pos.pm;pos.eq.ra"),
    "pmdec": ("mas/yr", "pos.pm;pos.eq.dec"),
    "ra_error": ("mas", "stat.error;pos.eq.ra"),
    "dec_error": ("mas", "stat.error;pos.eq.dec"),
    "epoch": ("yr", "time.epoch"),
    "zp_nightly": ("mag", "phot.calib;phot.mag"),
    "zp_nightly_err": ("mag", "stat.error;phot.calib"),
    "transparency": (None, "phys.transmission"),
    "sky_background": ("ct/(s.pix)", "instr.skyLevel"),
    "bkg_mean": ("ct/pix", "instr.skyLevel"),
    "bkg_std": ("ct/pix", "stat.stdev;instr.skyLevel"),
    "astro_rms": ("arcsec", "stat.stdev;pos"),
    "object": (None, "meta.id;src"),
    "source_id": (None, "meta.id"),
    "refcat.name": (None, "meta.id;meta.main"),
}


def _votable_type(coltype: sa.types.TypeEngine) -> tuple[str, str | None, str | None] | None:
    """(datatype, arraysize, xtype) of a SQLAlchemy type; None when not publishable (JSON)."""
    if isinstance(coltype, sa.types.TypeDecorator):
        coltype = coltype.impl if not isinstance(coltype.impl, type) else coltype.impl()
    if isinstance(coltype, sa.JSON):
        return None
    if isinstance(coltype, sa.Boolean):
        return "boolean", None, None
    if isinstance(coltype, sa.BigInteger):
        return "long", None, None
    if isinstance(coltype, sa.SmallInteger):
        return "short", None, None
    if isinstance(coltype, sa.Integer):
        return "int", None, None
    if isinstance(coltype, sa.Float | sa.Numeric):
        return "double", None, None
    if isinstance(coltype, sa.DateTime | sa.Date):
        return "char", "*", "timestamp"
    if isinstance(coltype, sa.String | sa.Uuid):
        return "char", "*", None
    return None


def _indexed_columns(table: Table) -> set[str]:
    out = {c.name for c in table.primary_key.columns}
    for index in table.indexes:
        cols = list(index.columns)
        if cols:
            out.add(cols[0].name)  # a B-tree serves its leading column
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint) and constraint.columns:
            out.add(next(iter(constraint.columns)).name)
    return out


def _published_table(spec: PublishedTable, names: set[str]) -> TableMeta:
    table = Base.metadata.tables[spec.table]
    indexed = _indexed_columns(table)
    columns: list[ColumnMeta] = []
    for col in table.columns:
        vt = _votable_type(col.type)
        if vt is None or col.name in spec.exclude:
            continue
        datatype, arraysize, xtype = vt
        unit, ucd = ANNOTATIONS.get(f"{spec.table}.{col.name}") or ANNOTATIONS.get(
            col.name, (None, None)
        )
        columns.append(
            ColumnMeta(
                name=col.name,
                datatype=datatype,
                arraysize=arraysize,
                xtype=xtype,
                description=(col.comment or col.name).strip(),
                unit=unit,
                ucd=ucd,
                indexed=col.name in indexed,
                principal=col.primary_key or col.name in ("ra", "dec", "mag", "band", "filter"),
            )
        )
    keys = []
    published = {c.name for c in columns}
    for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
        target = fk.column.table.name
        if target in names and fk.parent.name in published:
            keys.append(
                ForeignKeyMeta(
                    key_id=f"{spec.table}.{fk.parent.name}",
                    from_table=f"{SCHEMA}.{spec.table}",
                    target_table=f"{SCHEMA}.{target}",
                    from_column=fk.parent.name,
                    target_column=fk.column.name,
                    description=f"{spec.table}.{fk.parent.name} -> {target}.{fk.column.name}",
                )
            )
    cols = {c.name for c in columns}
    position = Position("ra", "dec", "healpix") if {"ra", "dec", "healpix"} <= cols else None
    return TableMeta(
        schema=SCHEMA,
        name=spec.table,
        sql_name=spec.table,
        description=spec.description,
        columns=tuple(columns),
        position=position,
        foreign_keys=tuple(keys),
    )


def registry_tables() -> list[TableMeta]:
    """The published registry tables (:data:`PUBLISHED`), built from the models."""
    import surveydm.db.models  # noqa: F401  (fills Base.metadata)

    names = {p.table for p in PUBLISHED}
    return [_published_table(spec, names) for spec in PUBLISHED]
