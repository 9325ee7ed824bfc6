"""``TAP_SCHEMA`` (TAP 1.1 section 4): schemas, tables, columns, keys and key_columns, derived
from the published :class:`~surveydm.publish.vo.tap.tables.TableMeta` objects.

Nothing is stored: a query that names a ``TAP_SCHEMA`` table reads a ``WITH`` common table
expression of ``VALUES`` rows that the translator puts in front of the SQL, so the metadata can
never drift from the models and the read-only registry is never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from surveydm.publish.vo.tap.tables import Catalog, ColumnMeta, ForeignKeyMeta, TableMeta, adql_name

TAP_SCHEMA = "TAP_SCHEMA"


def _c(name: str, datatype: str, description: str, arraysize: str | None = None) -> ColumnMeta:
    return ColumnMeta(
        name=name,
        datatype=datatype,
        arraysize=arraysize if datatype != "char" else "*",
        description=description,
        principal=True,
    )


#: Column definitions of the TAP_SCHEMA tables (TAP 1.1 sections 4.1-4.5), in order.
TAP_SCHEMA_COLUMNS: dict[str, tuple[ColumnMeta, ...]] = {
    "schemas": (
        _c("schema_name", "char", "schema name, for reference"),
        _c("utype", "char", "lists the utypes of schemas"),
        _c("description", "char", "describes schemas"),
        _c("schema_index", "int", "recommended sort order when listing schemas"),
    ),
    "tables": (
        _c("schema_name", "char", "the schema name from TAP_SCHEMA.schemas"),
        _c("table_name", "char", "the fully qualified table name"),
        _c("table_type", "char", "one of: table, view"),
        _c("utype", "char", "lists the utype of tables"),
        _c("description", "char", "describes tables"),
        _c("table_index", "int", "recommended sort order when listing tables"),
    ),
    "columns": (
        _c("table_name", "char", "the table this column belongs to"),
        _c("column_name", "char", "the column name"),
        _c("datatype", "char", "the ADQL datatype as in the VODataService standard"),
        _c("arraysize", "char", "lists the size of variable-length columns"),
        _c("xtype", "char", "a DALI or custom extended type annotation"),
        _c("size", "int", "deprecated: use arraysize"),
        _c("description", "char", "describes the columns"),
        _c("utype", "char", "lists the utypes of columns"),
        _c("unit", "char", "lists the unit of the column"),
        _c("ucd", "char", "the UCD of the column"),
        _c("indexed", "int", "an indexed column; 1 means 1, 0 means 0"),
        _c("principal", "int", "a principal column; 1 means 1, 0 means 0"),
        _c("std", "int", "a standard column; 1 means 1, 0 means 0"),
        _c("column_index", "int", "recommended sort order when listing columns"),
    ),
    "keys": (
        _c("key_id", "char", "unique key identifier"),
        _c("from_table", "char", "fully qualified table name"),
        _c("target_table", "char", "fully qualified table name"),
        _c("description", "char", "describes keys in the tableset"),
        _c("utype", "char", "lists the utype of keys in the tableset"),
    ),
    "key_columns": (
        _c("key_id", "char", "key identifier from TAP_SCHEMA.keys"),
        _c("from_column", "char", "key column name in the from_table"),
        _c("target_column", "char", "key column name in the target_table"),
    ),
}

#: Foreign keys between the TAP_SCHEMA tables (TAP 1.1 section 4): (from, column, target, column).
_TAP_KEYS = (
    ("tables", "schema_name", "schemas", "schema_name"),
    ("columns", "table_name", "tables", "table_name"),
    ("keys", "from_table", "tables", "table_name"),
    ("keys", "target_table", "tables", "table_name"),
    ("key_columns", "key_id", "keys", "key_id"),
)


def _tap_table(name: str) -> TableMeta:
    keys = tuple(
        ForeignKeyMeta(
            key_id=f"TAP_SCHEMA.{frm}.{col}",
            from_table=f"{TAP_SCHEMA}.{frm}",
            target_table=f"{TAP_SCHEMA}.{target}",
            from_column=col,
            target_column=tcol,
        )
        for frm, col, target, tcol in _TAP_KEYS
        if frm == name
    )
    return TableMeta(
        TAP_SCHEMA,
        name,
        f"tap_schema_{name}",
        _DESCRIPTIONS[name],
        TAP_SCHEMA_COLUMNS[name],
        foreign_keys=keys,
    )


_DESCRIPTIONS = {
    "schemas": "description of schemas in this tableset",
    "tables": "description of tables in this tableset",
    "columns": "description of columns in this tableset",
    "keys": "description of foreign keys in this tableset",
    "key_columns": "description of foreign key columns in this tableset",
}


@dataclass(frozen=True)
class VirtualTable:
    """A table served from ``VALUES`` rows: its metadata and its rows (in column order)."""

    meta: TableMeta
    rows: tuple[tuple[Any, ...], ...]


def _rows(published: Sequence[TableMeta], schema_descriptions: dict[str, str]) -> dict[str, list]:
    schemas = [TAP_SCHEMA, *dict.fromkeys(t.schema for t in published)]
    tap_tables = [_tap_table(n) for n in TAP_SCHEMA_COLUMNS]
    every = [*tap_tables, *published]
    out: dict[str, list] = {n: [] for n in TAP_SCHEMA_COLUMNS}
    for i, s in enumerate(schemas):
        desc = "TAP metadata (TAP 1.1 section 4)" if s == TAP_SCHEMA else schema_descriptions.get(s)
        out["schemas"].append((s, None, desc, i))
    for ti, t in enumerate(every):
        out["tables"].append((t.schema, t.qualified, t.table_type, None, t.description, ti))
        for ci, c in enumerate(t.columns):
            out["columns"].append(
                (
                    t.qualified,
                    adql_name(c.name),
                    c.datatype,
                    c.arraysize,
                    c.xtype,
                    None,
                    c.description,
                    None,
                    c.unit,
                    c.ucd,
                    int(c.indexed),
                    int(c.principal),
                    int(t.schema == TAP_SCHEMA),
                    ci,
                )
            )
        for k in t.foreign_keys:
            out["keys"].append((k.key_id, k.from_table, k.target_table, k.description, None))
            out["key_columns"].append((k.key_id, k.from_column, k.target_column))
    return out


def tap_schema_tables(
    published: Sequence[TableMeta], schema_descriptions: dict[str, str] | None = None
) -> list[VirtualTable]:
    """The five TAP_SCHEMA tables describing themselves and ``published``."""
    rows = _rows(published, schema_descriptions or {})
    return [VirtualTable(_tap_table(n), tuple(rows[n])) for n in TAP_SCHEMA_COLUMNS]


def build_catalog(
    published: Sequence[TableMeta],
    extra: Sequence[VirtualTable] = (),
    schema_descriptions: dict[str, str] | None = None,
) -> tuple[Catalog, dict[str, VirtualTable]]:
    """The catalog ADQL sees (TAP_SCHEMA + ``published`` + ``extra``, e.g. uploads) and the
    virtual tables by SQL name (what the translator must emit as ``WITH`` expressions)."""
    catalog = Catalog()
    virtual: dict[str, VirtualTable] = {}
    for vt in tap_schema_tables(published, schema_descriptions):
        catalog.add(vt.meta)
        virtual[vt.meta.sql_name] = vt
    for t in published:
        catalog.add(t)
    for vt in extra:
        catalog.add(vt.meta)
        virtual[vt.meta.sql_name] = vt
    return catalog, virtual
