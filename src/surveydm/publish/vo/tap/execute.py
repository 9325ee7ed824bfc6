"""Run translated SQL over the SQL browser's read-only connections, streaming rows.

The engine-level guarantees are those of :mod:`surveydm.publish.sqlbrowser` and are reused,
not re-implemented: on SQLite a ``mode=ro`` connection with the browser's authorizer and a
progress-handler time limit; on PostgreSQL the browser's read-only login role, opened with
``default_transaction_read_only=on``. A result that fits one batch (the query's row limit says
so: a cone search) is one statement in the extended protocol (one statement only), run as the
implicit transaction of that read-only session under the session's ``statement_timeout`` (the
query's limit, set again when it changes): one round trip. A longer result is read through a
server-side cursor in an explicit ``BEGIN READ ONLY`` transaction with a transaction-local
``statement_timeout`` (``BEGIN``, ``SET LOCAL``, ``DECLARE``, the first ``FETCH`` pipelined
into one round trip), always rolled back. On a loaded machine every round trip costs a
scheduling delay, which dominated a cone search. Connections are pooled (:data:`POOL_SIZE`
idle per process and database; a SQLite one keeps its authorizer, a PostgreSQL one its
read-only session), which takes the connection set-up out of a cone search's latency. Rows
come in batches, so a result is never held in memory whole.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import adbc_driver_postgresql.dbapi as adbc_postgresql
import adbc_driver_sqlite.dbapi as adbc_sqlite

from surveydm.errors import SurveydmError
from surveydm.publish.sqlbrowser import SqlBrowser, sqlite_authorizer

#: Rows fetched per round trip (large: per-call overhead dominates a long stream's cost, and
#: a batch of a few numeric columns is still only a few MB).
BATCH_ROWS = 20_000


class TapExecutionError(SurveydmError):
    """The database refused or failed the query; the message is the engine's first line."""


class TapTimeout(TapExecutionError):
    """The query ran past its time limit and was stopped."""


@dataclass
class Rows:
    """A running query: :meth:`batches` yields lists of row tuples until the result ends."""

    cursor: Any
    engine: str
    deadline: float
    limit_s: float

    def batches(self, size: int = BATCH_ROWS) -> Iterator[list[tuple]]:
        """Batches of at most ``size`` rows.

        Raises:
            TapTimeout: the time limit passed while fetching.
            TapExecutionError: the engine failed while fetching.
        """
        while True:
            try:
                rows = self.cursor.fetchmany(size)
            except Exception as exc:  # noqa: BLE001  (engine errors, mapped below)
                raise _engine_error(exc, self.limit_s) from None
            if not rows:
                return
            yield rows
            if len(rows) < size:  # the result is exhausted: no further round trip
                return


def _engine_error(exc: Exception, limit_s: float) -> TapExecutionError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    name = type(exc).__name__
    if "interrupted" in text or name == "QueryCanceled":
        return TapTimeout(f"query stopped after the time limit of {limit_s:g} s")
    if "not authorized" in text or name in ("ReadOnlySqlTransaction", "InsufficientPrivilege"):
        return TapExecutionError(f"refused: the TAP service is read-only ({text})")
    return TapExecutionError(f"database error: {text}")


@contextmanager
def run_sql(
    browser: SqlBrowser,
    sql: str,
    time_limit_s: float,
    binary: bool = False,
    max_rows: int | None = None,
) -> Iterator[Rows]:
    """Open a read-only connection as ``browser`` does, execute ``sql`` and yield its rows.

    ``binary`` asks PostgreSQL for values in binary format (no text parsing: ``bytea``
    arrives as is); SQLite ignores it. ``max_rows``, when given, is the most rows the caller
    will read: on PostgreSQL a result that fits one batch (:data:`BATCH_ROWS`) is then read
    without a server-side cursor, in a single round trip.

    Raises:
        TapExecutionError: connection or execution failed (read-only refusal, SQL error).
        TapTimeout: the statement ran past ``time_limit_s``.
    """
    if browser.backend == "sqlite":
        with _sqlite(browser, sql, time_limit_s) as rows:
            yield rows
    else:
        with _postgres(browser, sql, time_limit_s, binary, max_rows) as rows:
            yield rows


#: Idle read-only connections kept per database and reader, per process.
POOL_SIZE = 4
_pools: dict[tuple, list[Any]] = {}
_pool_lock = threading.Lock()


@contextmanager
def _sqlite(browser: SqlBrowser, sql: str, limit_s: float) -> Iterator[Rows]:
    key = ("sqlite", browser.url.database)
    conn = None
    with _pool_lock:
        idle = _pools.setdefault(key, [])
        if idle:
            conn = idle.pop()
    if conn is None:
        # a streamed response is iterated from worker threads, one at a time
        conn = browser.sqlite_connect(check_same_thread=False)
        _sqlite_mmap(conn)
    ok = False
    try:
        deadline = time.monotonic() + limit_s
        # checked every 50,000 virtual-machine steps: well under a millisecond apart
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 50_000)
        try:
            cur = conn.execute(sql)
        except sqlite3.Error as exc:
            raise _engine_error(exc, limit_s) from None
        yield Rows(cur, "sqlite", deadline, limit_s)
        cur.close()
        ok = True
    finally:
        with _pool_lock:
            idle = _pools.setdefault(key, [])
            keep = ok and len(idle) < POOL_SIZE
            if keep:
                idle.append(conn)
        if not keep:
            conn.close()


#: Bytes of a SQLite registry a pooled connection maps into memory (SQLite caps it at its
#: compile-time ``SQLITE_MAX_MMAP_SIZE``, 2 GB by default).
SQLITE_MMAP_BYTES = 1 << 34


def _sqlite_mmap(conn: sqlite3.Connection) -> None:
    """Read the database through memory mapping: a cone search touches ~100 random pages, and
    with ``mmap_size`` each is a memory access instead of a ``pread`` into the connection's
    page cache (p50 of the bench's cone SQL on 10^7 rows: about half). The pragma is set with
    the authorizer off for that one statement (it refuses pragmas), then the authorizer is
    put back; the connection stays ``mode=ro``."""
    conn.set_authorizer(None)
    try:
        conn.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")
    finally:
        conn.set_authorizer(sqlite_authorizer)


@dataclass
class _PgSession:
    """A pooled read-only PostgreSQL connection and its session ``statement_timeout``, ms."""

    conn: Any
    timeout_ms: int = 0


def _pg_connect(browser: SqlBrowser) -> tuple[tuple, _PgSession]:
    """An idle pooled connection, or a new one, as the browser's read-only role."""
    import psycopg

    try:
        info = browser.reader_conninfo()
    except SurveydmError as exc:
        raise TapExecutionError(str(exc)) from None
    key = tuple(sorted(info.items()))
    with _pool_lock:
        idle = _pools.setdefault(key, [])
        while idle:
            session = idle.pop()
            if not session.conn.closed:
                return key, session
    try:
        conn = psycopg.connect(
            **info,
            options="-c default_transaction_read_only=on",
            connect_timeout=10,
            autocommit=True,  # one implicit transaction per statement, or explicit ones
        )
    except psycopg.OperationalError as exc:
        raise TapExecutionError(f"cannot connect read-only: {exc}") from None
    return key, _PgSession(conn)


def _pg_release(key: tuple, session: _PgSession) -> None:
    """Roll back and keep the connection for the next query (or close it)."""
    import psycopg

    conn = session.conn
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001  (a broken connection is simply dropped)
        conn.close()
        return
    with _pool_lock:
        idle = _pools.setdefault(key, [])
        if len(idle) < POOL_SIZE and not conn.closed:
            idle.append(session)
            return
    conn.close()


@contextmanager
def _postgres(
    browser: SqlBrowser, sql: str, limit_s: float, binary: bool, max_rows: int | None
) -> Iterator[Rows]:
    import psycopg

    key, session = _pg_connect(browser)
    conn = session.conn
    timeout_ms = max(1, int(limit_s * 1000))  # an integer of ours: no user text
    ok = False
    try:
        try:
            if max_rows is not None and max_rows <= BATCH_ROWS + 1:
                first = _pg_one_shot(session, sql, timeout_ms, binary, max_rows)
                done = True
            else:
                first = _pg_declare(conn, sql, timeout_ms, binary)
                done = len(first) < BATCH_ROWS
        except psycopg.Error as exc:
            raise _engine_error(exc, limit_s) from None
        deadline = time.monotonic() + limit_s
        yield Rows(_PgCursor(conn, binary, first, done), "postgresql", deadline, limit_s)
        ok = True
    finally:
        if ok:
            _pg_release(key, session)
        else:
            conn.close()  # never committed: the server rolls any transaction back


def _pg_one_shot(
    session: _PgSession, sql: str, timeout_ms: int, binary: bool, max_rows: int
) -> list[tuple]:
    """All rows of a result known to be short (at most ``max_rows``), in one round trip: the
    statement alone, as the implicit transaction of the read-only session, under the
    session's ``statement_timeout`` (set when it is not this query's limit already). The
    ``LIMIT`` goes as a bound parameter, which puts the statement in the extended protocol:
    one statement only."""
    conn = session.conn
    if session.timeout_ms != timeout_ms:
        conn.execute(f"SET statement_timeout = {timeout_ms}")
        session.timeout_ms = timeout_ms
    query = f"SELECT * FROM ({sql.replace('%', '%%')}) AS tap_rows LIMIT %s"
    return conn.execute(query, (max_rows,), binary=binary, prepare=False).fetchall()


def _pg_declare(conn: Any, sql: str, timeout_ms: int, binary: bool) -> list[tuple]:
    """Open a server-side cursor over ``sql`` in a read-only transaction with the query's own
    time limit and return its first batch: one round trip (pipeline mode; ``DECLARE`` in the
    extended protocol, which takes one statement only)."""
    with conn.pipeline():
        conn.execute("BEGIN READ ONLY")
        conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        conn.execute(f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR {sql}", binary=True)
        cur = conn.cursor(binary=binary)
        cur.execute(f"FETCH FORWARD {BATCH_ROWS} FROM {_CURSOR}")
    return cur.fetchall()


_CURSOR = "surveydm_tap"


#: Rows per Arrow record batch of the columnar path.
ARROW_BATCH_ROWS = 65_536


#: Name of the NULL bit-mask column of the SQLite columnar path (bit i: column i is NULL).
NULL_MASK = "tap_nulls"


def _sqlite_typed(sql: str, floats: Sequence[bool]) -> str | None:
    """``sql`` with every column made non-NULL and of one storage class (``CAST(coalesce(c,
    0) AS REAL|INTEGER)``), after a :data:`NULL_MASK` column of the NULL bits: the ADBC SQLite
    driver infers each column's type from its first batch, and a column NULL there, or integer
    there and real later, would fail mid-stream. None beyond 63 columns (one 64-bit mask)."""
    if len(floats) > 63:
        return None
    names = [f"c{i}" for i in range(len(floats))]
    mask = " | ".join(f"(({n} IS NULL) << {i})" for i, n in enumerate(names))
    values = ", ".join(
        f"CAST(coalesce({n}, 0) AS {'REAL' if f else 'INTEGER'}) AS {n}"
        for n, f in zip(names, floats, strict=True)
    )
    head = f"WITH tap_rows({', '.join(names)}) AS ({sql})"
    return f"{head} SELECT {mask} AS {NULL_MASK}, {values} FROM tap_rows"


@contextmanager
def arrow_batches(
    browser: SqlBrowser, sql: str, time_limit_s: float, max_rows: int, floats: Sequence[bool]
) -> Iterator[Iterator[Any] | None]:
    """The result of ``sql`` (at most ``max_rows`` rows) as ``pyarrow.RecordBatch`` es read by
    the Apache Arrow ADBC drivers (``adbc-driver-sqlite``, ``adbc-driver-postgresql``): the
    engine's values go into columnar buffers in C, with no Python object per value (the
    ``sqlite3`` and psycopg cursors build a tuple per row, which bounded a long stream).

    The read-only guarantees are the browser's. PostgreSQL: the browser's read-only login
    role, the session opened with ``default_transaction_read_only=on`` and the query's
    ``statement_timeout``. SQLite: the file opened ``mode=ro``; the statement is first
    compiled on the browser's connection, under its authorizer (``EXPLAIN QUERY PLAN``), and
    the columnar path is taken only when the plan is a single table scan or search (no join,
    sort, subquery or temporary table), whose cost is bounded by one pass over one table: the
    ADBC SQLite driver has no way to interrupt a statement, so the time limit is checked
    between batches only; its columns come typed and non-NULL after a NULL mask column
    (:func:`_sqlite_typed`). ``floats`` tells, per column, a floating-point one. Yields None
    when the path does not apply (the caller falls back to
    :func:`run_sql`).

    Raises:
        TapExecutionError: the engine refused or failed the statement.
        TapTimeout: the time limit passed (between batches).
    """
    limited = f"SELECT * FROM ({sql}) AS tap_rows LIMIT {int(max_rows)}"
    if browser.backend == "sqlite":
        typed = _sqlite_typed(sql, floats)
        if typed is None or not _sqlite_single_scan(browser, sql, time_limit_s):
            yield None
            return
        limited = f"{typed} LIMIT {int(max_rows)}"
        conn = adbc_sqlite.connect(f"file:{browser.url.database}?mode=ro")
        options = {"adbc.sqlite.query.batch_rows": str(ARROW_BATCH_ROWS)}
    else:
        conn = adbc_postgresql.connect(_pg_uri(browser, time_limit_s))
        options = {}
    deadline = time.monotonic() + time_limit_s
    cur = conn.cursor()
    try:
        if options:
            cur.adbc_statement.set_options(**options)
        try:
            cur.execute(limited)
            reader = cur.fetch_record_batch()
        except Exception as exc:  # noqa: BLE001  (driver errors, mapped)
            raise _engine_error(exc, time_limit_s) from None
        yield _timed_batches(reader, deadline, time_limit_s)
    finally:
        cur.close()
        conn.close()


def _timed_batches(reader: Any, deadline: float, limit_s: float) -> Iterator[Any]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001  (driver errors, mapped)
            raise _engine_error(exc, limit_s) from None
        if batch.num_rows:
            yield batch
        if time.monotonic() > deadline:
            raise TapTimeout(f"query stopped after the time limit of {limit_s:g} s")


def _sqlite_single_scan(browser: SqlBrowser, sql: str, limit_s: float) -> bool:
    """Compile ``sql`` under the browser's authorizer and tell whether its plan is one table
    scan or search (``EXPLAIN QUERY PLAN`` has one line, ``SCAN`` or ``SEARCH``).

    Raises:
        TapExecutionError: refused by the authorizer, or not valid SQL.
    """
    conn = browser.sqlite_connect()
    try:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    except sqlite3.Error as exc:
        raise _engine_error(exc, limit_s) from None
    finally:
        conn.close()
    if len(plan) != 1:
        return False
    detail = str(plan[0][-1])
    return detail.startswith(("SCAN ", "SEARCH ")) and "SUBQUERY" not in detail.upper()


def _pg_uri(browser: SqlBrowser, limit_s: float) -> str:
    """A libpq URI of the browser's read-only login, read-only session, query time limit."""
    from urllib.parse import quote

    try:
        info = browser.reader_conninfo()
    except SurveydmError as exc:
        raise TapExecutionError(str(exc)) from None
    timeout_ms = max(1, int(limit_s * 1000))
    auth = quote(str(info["user"]), safe="")
    if "password" in info:
        auth += ":" + quote(str(info["password"]), safe="")
    options = quote(
        f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}", safe=""
    )
    return (
        f"postgresql://{auth}@{info['host']}:{info['port']}/{quote(str(info['dbname']), safe='')}"
        f"?options={options}&connect_timeout=10"
    )


class _PgCursor:
    """``FETCH FORWARD`` from the declared cursor; the first batch is fetched already, and a
    short batch ends the result without another round trip."""

    def __init__(self, conn: Any, binary: bool, first: list[tuple], done: bool) -> None:
        self.conn = conn
        self.binary = binary
        self.first = first
        self.done = done

    def fetchmany(self, size: int) -> list[tuple]:
        if self.first:
            out, self.first = self.first, []
            if len(out) < size and not self.done:
                out = out + self.fetchmany(size - len(out))
            return out
        if self.done:
            return []
        rows = self.conn.execute(f"FETCH FORWARD {int(size)} FROM {_CURSOR}", binary=self.binary)
        out = rows.fetchall()
        if len(out) < size:
            self.done = True
        return out
