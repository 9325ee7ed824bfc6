"""Run translated SQL over the SQL browser's read-only connections, streaming rows.

The engine-level guarantees are those of :mod:`surveydm.publish.sqlbrowser` and are reused,
not re-implemented: on SQLite a ``mode=ro`` connection with the browser's authorizer and a
progress-handler time limit; on PostgreSQL the browser's read-only login role, opened with
``default_transaction_read_only=on`` and ``statement_timeout``, reading through a server-side
cursor (one statement only) and rolled back. Rows come in batches, so a result is never held
in memory whole.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from surveydm.errors import SurveydmError
from surveydm.publish.sqlbrowser import SqlBrowser

#: Rows fetched per round trip.
BATCH_ROWS = 5_000


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


def _engine_error(exc: Exception, limit_s: float) -> TapExecutionError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    name = type(exc).__name__
    if "interrupted" in text or name == "QueryCanceled":
        return TapTimeout(f"query stopped after the time limit of {limit_s:g} s")
    if "not authorized" in text or name in ("ReadOnlySqlTransaction", "InsufficientPrivilege"):
        return TapExecutionError(f"refused: the TAP service is read-only ({text})")
    return TapExecutionError(f"database error: {text}")


@contextmanager
def run_sql(browser: SqlBrowser, sql: str, time_limit_s: float) -> Iterator[Rows]:
    """Open a read-only connection as ``browser`` does, execute ``sql`` and yield its rows.

    Raises:
        TapExecutionError: connection or execution failed (read-only refusal, SQL error).
        TapTimeout: the statement ran past ``time_limit_s``.
    """
    if browser.backend == "sqlite":
        with _sqlite(browser, sql, time_limit_s) as rows:
            yield rows
    else:
        with _postgres(browser, sql, time_limit_s) as rows:
            yield rows


@contextmanager
def _sqlite(browser: SqlBrowser, sql: str, limit_s: float) -> Iterator[Rows]:
    conn = sqlite3.connect(
        f"file:{browser.url.database}?mode=ro", uri=True, timeout=5.0, check_same_thread=False
    )  # a streamed response is iterated from worker threads, one at a time
    try:
        conn.set_authorizer(SqlBrowser._authorizer)
        deadline = time.monotonic() + limit_s
        # checked every 50,000 virtual-machine steps: well under a millisecond apart
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 50_000)
        try:
            cur = conn.execute(sql)
        except sqlite3.Error as exc:
            raise _engine_error(exc, limit_s) from None
        yield Rows(cur, "sqlite", deadline, limit_s)
    finally:
        conn.close()


@contextmanager
def _postgres(browser: SqlBrowser, sql: str, limit_s: float) -> Iterator[Rows]:
    import psycopg

    if browser.reader_url is not None:
        info = browser._pg_conninfo(browser.reader_url)
    else:
        try:
            browser.ensure_reader_role()
        except SurveydmError as exc:
            raise TapExecutionError(str(exc)) from None
        info = browser._pg_conninfo(browser.url)
        info["user"] = "surveydm_reader"
        info.pop("password", None)
    timeout_ms = max(1, int(limit_s * 1000))
    options = f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
    try:
        conn = psycopg.connect(**info, options=options, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise TapExecutionError(f"cannot connect read-only: {exc}") from None
    try:
        cur = conn.cursor(name="surveydm_tap")
        try:
            cur.execute(sql)
            # A named cursor only runs the statement at the first fetch: surface errors now.
            first = cur.fetchmany(1)
        except psycopg.Error as exc:
            raise _engine_error(exc, limit_s) from None
        yield Rows(_Prepended(first, cur), "postgresql", time.monotonic() + limit_s, limit_s)
    finally:
        conn.close()  # never committed: the server rolls the transaction back


class _Prepended:
    """A cursor whose first rows were already fetched."""

    def __init__(self, first: list[tuple], cursor: Any) -> None:
        self.first = first
        self.cursor = cursor

    def fetchmany(self, size: int) -> list[tuple]:
        if self.first:
            out, self.first = self.first, []
            return out + (self.cursor.fetchmany(size - len(out)) if size > len(out) else [])
        return self.cursor.fetchmany(size)
