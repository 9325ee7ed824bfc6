"""Bulk inserts of many rows into one table, in the caller's transaction.

PostgreSQL gets ``COPY ... FROM STDIN`` through psycopg 3's ``cursor.copy`` (one command and a
data stream: several times faster than a multi-row or pipelined ``INSERT`` for thousands of
rows; PostgreSQL documentation, "Populating a Database", section 14.4.2); SQLite gets one
``executemany`` (a C loop in the driver over one prepared statement). Either way the rows are
written in the session's transaction: they commit or roll back with everything else in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


def bulk_insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (dicts with the same keys: column names of ``table``) into ``table``
    in ``session``'s transaction; returns the number of rows.

    Values are those the columns take from Python (``None`` is NULL). JSON columns are not
    supported by the ``COPY`` path (none of the tables written in bulk has one).

    Raises:
        ValueError: a row has other keys than the first one, or a key is not a column.
        sqlalchemy.exc.IntegrityError: a constraint failed (foreign key, NOT NULL); like any
            ``sqlalchemy.exc.DBAPIError`` (a lost connection: ``OperationalError``) the
            transaction must then be rolled back.
    """
    if not rows:
        return 0
    cols = list(rows[0])
    unknown = [c for c in cols if c not in table.c]
    if unknown:
        raise ValueError(f"not columns of {table.name}: {', '.join(unknown)}")
    keys = set(cols)
    if any(row.keys() != keys for row in rows):
        raise ValueError(f"every row inserted into {table.name} needs the same columns")
    if session.get_bind().dialect.name != "postgresql":
        session.execute(table.insert(), list(rows))
        return len(rows)
    session.flush()  # pending ORM rows (the parent ``image`` row) go first
    import psycopg

    raw = session.connection().connection.driver_connection
    names = ", ".join(f'"{c}"' for c in cols)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    try:
        with raw.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[c] for c in cols])
    except psycopg.Error as exc:  # the same exception classes as every other statement
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    return len(rows)
