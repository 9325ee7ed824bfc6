"""Run translated SQL over the SQL browser's read-only connections, streaming rows.

The engine-level guarantees are those of :mod:`surveydm.publish.sqlbrowser` and are reused,
not re-implemented: on SQLite a ``mode=ro`` connection with the browser's authorizer and a
progress-handler time limit; on PostgreSQL the browser's read-only login role, opened with
``default_transaction_read_only=on``, one read-only transaction per query with a transaction-
local ``statement_timeout``, reading through a server-side cursor (one statement only) and
rolled back. The PostgreSQL protocol is kept to four round trips for a small result (``BEGIN
READ ONLY`` with ``SET LOCAL statement_timeout``; ``DECLARE`` of the query in the extended
protocol, which takes one statement only; ``FETCH``; ``ROLLBACK``): on a loaded machine every
round trip costs a scheduling delay, which dominated a cone search. Connections are pooled
(:data:`POOL_SIZE` idle per process and database; a SQLite one keeps its authorizer, a
PostgreSQL one its read-only session), which takes the connection set-up out of a cone
search's latency. Rows come in batches, so a result
is never held in memory whole.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from surveydm.errors import SurveydmError
from surveydm.publish.sqlbrowser import READER_ROLE, SqlBrowser

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
    browser: SqlBrowser, sql: str, time_limit_s: float, binary: bool = False
) -> Iterator[Rows]:
    """Open a read-only connection as ``browser`` does, execute ``sql`` and yield its rows.

    ``binary`` asks PostgreSQL for values in binary format (no text parsing: ``bytea``
    arrives as is); SQLite ignores it.

    Raises:
        TapExecutionError: connection or execution failed (read-only refusal, SQL error).
        TapTimeout: the statement ran past ``time_limit_s``.
    """
    if browser.backend == "sqlite":
        with _sqlite(browser, sql, time_limit_s) as rows:
            yield rows
    else:
        with _postgres(browser, sql, time_limit_s, binary) as rows:
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
        conn = sqlite3.connect(
            f"file:{browser.url.database}?mode=ro", uri=True, timeout=5.0, check_same_thread=False
        )  # a streamed response is iterated from worker threads, one at a time
        conn.set_authorizer(SqlBrowser._authorizer)
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


def _pg_connect(browser: SqlBrowser) -> tuple[tuple, Any]:
    """An idle pooled connection, or a new one, as the browser's read-only role."""
    import psycopg

    if browser.reader_url is not None:
        info = browser._pg_conninfo(browser.reader_url)
    else:
        try:
            browser.ensure_reader_role()
        except SurveydmError as exc:
            raise TapExecutionError(str(exc)) from None
        info = browser._pg_conninfo(browser.url)
        info["user"] = READER_ROLE
        info.pop("password", None)
    key = tuple(sorted(info.items()))
    with _pool_lock:
        idle = _pools.setdefault(key, [])
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return key, conn
    try:
        conn = psycopg.connect(
            **info,
            options="-c default_transaction_read_only=on",
            connect_timeout=10,
            autocommit=True,  # transactions are opened and rolled back explicitly
        )
    except psycopg.OperationalError as exc:
        raise TapExecutionError(f"cannot connect read-only: {exc}") from None
    return key, conn


def _pg_release(key: tuple, conn: Any) -> None:
    """Roll back and keep the connection for the next query (or close it)."""
    import psycopg

    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001  (a broken connection is simply dropped)
        conn.close()
        return
    with _pool_lock:
        idle = _pools.setdefault(key, [])
        if len(idle) < POOL_SIZE and not conn.closed:
            idle.append(conn)
            return
    conn.close()


@contextmanager
def _postgres(browser: SqlBrowser, sql: str, limit_s: float, binary: bool) -> Iterator[Rows]:
    import psycopg

    key, conn = _pg_connect(browser)
    ok = False
    try:
        # One read-only transaction per query (the session default, asserted again), with
        # the query's own time limit (an integer of ours: no user text in this statement).
        conn.execute(
            f"BEGIN READ ONLY; SET LOCAL statement_timeout = {max(1, int(limit_s * 1000))}",
            prepare=False,  # two statements: simple protocol, never prepared
        )
        cursor = _PgCursor(conn, binary)
        try:
            # binary=True sends it in the extended protocol: exactly one statement
            conn.execute(f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR {sql}", binary=True)
            first = cursor.fetchmany(BATCH_ROWS)  # errors of the statement surface now
        except psycopg.Error as exc:
            raise _engine_error(exc, limit_s) from None
        cursor.first = first
        yield Rows(cursor, "postgresql", time.monotonic() + limit_s, limit_s)
        ok = True
    finally:
        if ok:
            _pg_release(key, conn)
        else:
            conn.close()  # never committed: the server rolls the transaction back


_CURSOR = "surveydm_tap"


class _PgCursor:
    """``FETCH FORWARD`` from the declared cursor; the first batch may be fetched already,
    and a short batch ends the result without another round trip."""

    def __init__(self, conn: Any, binary: bool) -> None:
        self.conn = conn
        self.binary = binary
        self.first: list[tuple] = []
        self.done = False

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
