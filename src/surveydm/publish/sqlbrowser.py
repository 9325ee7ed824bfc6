"""Read-only SQL browser over the registry (seed 000 section 7.4: "The SQL search page connects to
PAUdb with a read-only generic user ... limited in number of output rows, configurable by the
user, but with an upper limit of 10k entries").

Read-only holds at the engine level, never by filtering words:

* SQLite: a separate connection opened with the ``file:<path>?mode=ro`` URI, plus an authorizer
  (``sqlite3.Connection.set_authorizer``) that allows only the ``SELECT``, ``READ``,
  ``FUNCTION`` and ``RECURSIVE`` actions (every insert, update, delete, create, drop, alter,
  attach, detach, pragma, transaction, savepoint, vacuum and analyze is denied) and denies the
  functions that reach outside the database (``load_extension``, ``fts3_tokenizer``, the shell's
  ``readfile``/``writefile``/``edit``). A progress handler interrupts a statement that runs past
  the time limit. ``sqlite3`` executes one statement per call, so ``SELECT 1; DELETE ...`` is
  rejected by the driver.
* PostgreSQL: a connection as a dedicated login role (:data:`READER_ROLE`, created if the
  registry's user may: ``NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT`` with ``SELECT`` on the
  tables only), opened with ``default_transaction_read_only=on`` and ``statement_timeout``; the
  query runs as a server-side cursor (``DECLARE ... CURSOR FOR <query>``), which the server only
  accepts for one ``SELECT``/``VALUES`` statement and sends through the extended protocol (no
  multiple statements); the transaction is always rolled back and the connection closed. The
  role cannot switch to another role (``set_config('role', ...)`` is refused), cannot use
  ``nextval``/``setval`` (no sequence privileges; a read-only transaction also refuses them),
  and the setup revokes ``EXECUTE`` from ``PUBLIC`` on the few built-in functions whose effects
  survive a rollback (:data:`PG_SIDE_EFFECT_FUNCTIONS`), granting them back to the registry's
  user.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import make_url

from surveydm.errors import SurveydmError

#: Upper bound of the row limit a user may ask for (seed 000 section 7.4).
MAX_ROW_LIMIT = 10_000
#: Row limit when the user sets none.
DEFAULT_ROW_LIMIT = 1_000
#: Statement time limit in seconds when none is configured.
DEFAULT_TIME_LIMIT_S = 5.0
#: PostgreSQL login role the browser connects as.
READER_ROLE = "surveydm_reader"

log = logging.getLogger("surveydm.sqlbrowser")

#: Built-in PostgreSQL functions a read-only transaction does not stop and whose effect survives
#: the rollback (verified on PostgreSQL 15: signalling other backends of the same role, writing a
#: non-transactional WAL message). ``EXECUTE`` is revoked from ``PUBLIC`` on them in the registry
#: database when the reader role is set up.
PG_SIDE_EFFECT_FUNCTIONS = (
    "pg_terminate_backend(integer, bigint)",
    "pg_cancel_backend(integer)",
    "pg_logical_emit_message(boolean, text, text)",
    "pg_logical_emit_message(boolean, text, bytea)",
)

_SQLITE_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_SQLITE_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"}
)

_READ_ONLY_HINT = (
    "the SQL browser is read-only: it runs one SELECT (or WITH ... SELECT, VALUES) statement"
)


class SqlBrowserError(SurveydmError):
    """The query was refused or failed; the message says why (shown to the user)."""


class QueryTimeout(SqlBrowserError):
    """The statement ran longer than the time limit and was stopped."""


@dataclass
class QueryResult:
    """Result of one browser query.

    Attributes:
        columns: column names in order.
        rows: at most ``limit`` rows, values converted to JSON-friendly Python types.
        truncated: True when the query had more rows than the limit.
        elapsed_s: wall time of execution and fetch, seconds.
        limit: the row limit applied.
    """

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_s: float
    limit: int
    engine: str = ""
    notes: list[str] = field(default_factory=list)

    def to_csv(self) -> str:
        """The result as CSV text (RFC 4180, header line first; seed 000 note 18)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if v is None else v for v in row])
        return buf.getvalue()

    def numeric_column(self, name: str) -> list[float]:
        """Finite float values of column ``name`` (non-numeric and NULL values skipped).

        Raises:
            SqlBrowserError: no such column.
        """
        if name not in self.columns:
            raise SqlBrowserError(f"no column {name!r} in the result; columns: {self.columns}")
        idx = self.columns.index(name)
        out: list[float] = []
        for row in self.rows:
            v = row[idx]
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, int | float):
                f = float(v)
                if math.isfinite(f):
                    out.append(f)
        return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict | list):
        return value
    return str(value)


def sqlite_authorizer(
    action: int, arg1: str | None, arg2: str | None, db_name: str | None, source: str | None
) -> int:
    """SQLite authorizer callback (``sqlite3.Connection.set_authorizer``) of every read-only
    connection: only the ``SELECT``, ``READ``, ``FUNCTION`` and ``RECURSIVE`` actions, and no
    function that reaches outside the database (:data:`_SQLITE_DENIED_FUNCTIONS`).

    Returns:
        ``sqlite3.SQLITE_OK`` or ``sqlite3.SQLITE_DENY``.
    """
    if action not in _SQLITE_ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def pg_conninfo(url: Any) -> dict[str, Any]:
    """psycopg connection keywords (host, port, dbname, user, password when set) of a
    SQLAlchemy URL."""
    return {
        "host": url.host or "localhost",
        "port": url.port or 5432,
        "dbname": url.database,
        "user": url.username,
        **({"password": url.password} if url.password else {}),
    }


def check_limit(limit: int | None) -> int:
    """The row limit to apply: ``limit`` (default :data:`DEFAULT_ROW_LIMIT`), 1..10,000.

    Raises:
        SqlBrowserError: ``limit`` outside 1..:data:`MAX_ROW_LIMIT`.
    """
    if limit is None:
        return DEFAULT_ROW_LIMIT
    if not 1 <= int(limit) <= MAX_ROW_LIMIT:
        raise SqlBrowserError(f"row limit must be between 1 and {MAX_ROW_LIMIT}, not {limit}")
    return int(limit)


class SqlBrowser:
    """Runs user SQL against the registry over a read-only connection (see module docstring).

    ``registry_url`` is the registry's SQLAlchemy URL; ``reader_url`` (PostgreSQL only) an
    explicit URL of a read-only login role prepared by the DBA, used as is. Without it the
    browser sets up :data:`READER_ROLE` through the registry's own user the first time it is
    needed (that user needs ``CREATEROLE``, or the role must exist already with a trust or
    ``.pgpass`` entry). Thread-safe: every query opens its own connection.
    """

    def __init__(
        self,
        registry_url: str,
        *,
        reader_url: str | None = None,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    ) -> None:
        self.url = make_url(registry_url)
        self.backend = self.url.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise SqlBrowserError(
                f"the SQL browser supports SQLite and PostgreSQL, not {self.backend}"
            )
        if self.backend == "sqlite" and (not self.url.database or self.url.database == ":memory:"):
            raise SqlBrowserError("the SQL browser needs a file-backed SQLite registry")
        self.reader_url = make_url(reader_url) if reader_url else None
        self.time_limit_s = float(time_limit_s)
        self._setup_lock = threading.Lock()
        self._pg_ready = False
        self.notes: list[str] = []

    # -- public --------------------------------------------------------------------------
    def run(self, query: str, limit: int | None = None) -> QueryResult:
        """Execute one read-only statement and fetch at most ``limit`` rows.

        Raises:
            SqlBrowserError: empty query, write attempt, several statements, any SQL error
                (the database's message is kept).
            QueryTimeout: the statement ran past the time limit.
        """
        query = (query or "").strip()
        if not query:
            raise SqlBrowserError("empty query")
        limit = check_limit(limit)
        if self.backend == "sqlite":
            return self._run_sqlite(query, limit)
        return self._run_postgres(query, limit)

    # -- SQLite --------------------------------------------------------------------------
    def sqlite_connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        """A read-only connection to the SQLite registry: opened ``mode=ro`` with
        :func:`sqlite_authorizer` installed (the caller adds its time limit)."""
        conn = sqlite3.connect(
            f"file:{self.url.database}?mode=ro",
            uri=True,
            timeout=5.0,
            check_same_thread=check_same_thread,
        )
        conn.set_authorizer(sqlite_authorizer)
        return conn

    def _run_sqlite(self, query: str, limit: int) -> QueryResult:
        conn = self.sqlite_connect()
        try:
            deadline = time.monotonic() + self.time_limit_s
            conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 2_000)
            t0 = time.perf_counter()
            try:
                cur = conn.execute(query)
                rows = cur.fetchmany(limit + 1)
            except sqlite3.OperationalError as exc:
                if "interrupted" in str(exc):
                    raise QueryTimeout(
                        f"query stopped after the time limit of {self.time_limit_s:g} s"
                    ) from None
                if "not authorized" in str(exc):
                    raise SqlBrowserError(f"{_READ_ONLY_HINT}; refused: {exc}") from None
                raise SqlBrowserError(f"SQL error: {exc}") from None
            except sqlite3.ProgrammingError as exc:
                raise SqlBrowserError(f"{_READ_ONLY_HINT}; refused: {exc}") from None
            except sqlite3.DatabaseError as exc:
                msg = str(exc)
                if "not authorized" in msg or "authorization denied" in msg:
                    raise SqlBrowserError(f"{_READ_ONLY_HINT}; refused: {msg}") from None
                raise SqlBrowserError(f"SQL error: {msg}") from None
            elapsed = time.perf_counter() - t0
            columns = [d[0] for d in cur.description or []]
        finally:
            conn.close()
        return self._result(columns, rows, limit, elapsed)

    # -- PostgreSQL ----------------------------------------------------------------------
    def reader_conninfo(self) -> dict[str, Any]:
        """psycopg connection keywords of the read-only login: ``reader_url`` when given, else
        :data:`READER_ROLE` on the registry's server (set up first, :meth:`ensure_reader_role`).
        Connect with ``options="-c default_transaction_read_only=on"``.

        Raises:
            SqlBrowserError: the role cannot be set up.
        """
        if self.reader_url is not None:
            return pg_conninfo(self.reader_url)
        self.ensure_reader_role()
        info = pg_conninfo(self.url)
        info["user"] = READER_ROLE
        info.pop("password", None)
        return info

    def ensure_reader_role(self) -> None:
        """Create or refresh :data:`READER_ROLE` through the registry user (idempotent).

        Creates the login role if missing, grants it ``CONNECT``, ``USAGE`` on schema public and
        ``SELECT`` on every table, and revokes ``EXECUTE`` from ``PUBLIC`` on
        :data:`PG_SIDE_EFFECT_FUNCTIONS` (granting it back to the registry user).

        Raises:
            SqlBrowserError: the registry user may not create or grant to the role.
        """
        import psycopg
        from psycopg import sql

        with self._setup_lock:
            if self._pg_ready:
                return
            info = pg_conninfo(self.url)
            try:
                with psycopg.connect(**info, autocommit=True) as conn:
                    me = conn.execute("SELECT current_user").fetchone()[0]
                    exists = conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)
                    ).fetchone()
                    role = sql.Identifier(READER_ROLE)
                    if not exists:
                        # Another process may create it at the same moment.
                        with contextlib.suppress(psycopg.errors.DuplicateObject):
                            conn.execute(
                                sql.SQL(
                                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                                    "NOINHERIT NOREPLICATION"
                                ).format(role)
                            )
                    try:
                        conn.execute(
                            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                                role
                            )
                        )
                    except psycopg.errors.InsufficientPrivilege:
                        if not exists:
                            raise
                        # A role prepared by the DBA; every browser session sets it anyway.
                    conn.execute(
                        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                            sql.Identifier(info["dbname"]), role
                        )
                    )
                    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
                    conn.execute(
                        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role)
                    )
                    conn.execute(
                        sql.SQL(
                            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}"
                        ).format(role)
                    )
                    for fn in PG_SIDE_EFFECT_FUNCTIONS:
                        # Needs the functions' owner (a superuser); without it the remaining
                        # effects are the ones documented in docs/portal.md.
                        try:
                            conn.execute(f"REVOKE EXECUTE ON FUNCTION {fn} FROM PUBLIC")
                            conn.execute(
                                sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                                    sql.SQL(fn), sql.Identifier(me)
                                )
                            )
                        except psycopg.errors.InsufficientPrivilege as exc:
                            note = f"could not revoke EXECUTE on {fn} from PUBLIC: {exc}"
                            log.warning(note)
                            self.notes.append(note)
            except psycopg.Error as exc:
                raise SqlBrowserError(
                    f"cannot set up the read-only role {READER_ROLE!r} as {info['user']!r}: "
                    f"{str(exc).strip()}; create it as described in docs/portal.md or give "
                    "the portal an explicit read-only URL"
                ) from None
            self._pg_ready = True

    def _run_postgres(self, query: str, limit: int) -> QueryResult:
        import psycopg

        info = self.reader_conninfo()
        timeout_ms = max(1, int(self.time_limit_s * 1000))
        options = f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
        t0 = time.perf_counter()
        try:
            conn = psycopg.connect(**info, options=options, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise SqlBrowserError(f"cannot connect read-only as {info['user']!r}: {exc}") from None
        try:
            # A named cursor is DECLARE ... CURSOR FOR <query>: one SELECT/VALUES only, sent
            # through the extended protocol (no multiple statements).
            cur = conn.cursor(name="surveydm_sql_browser")
            try:
                cur.execute(query)
                rows = cur.fetchmany(limit + 1)
                columns = [d.name for d in cur.description or []]
            except psycopg.errors.QueryCanceled:
                raise QueryTimeout(
                    f"query stopped after the time limit of {self.time_limit_s:g} s"
                ) from None
            except (
                psycopg.errors.SyntaxError,
                psycopg.errors.FeatureNotSupported,
                psycopg.errors.ReadOnlySqlTransaction,
                psycopg.errors.InsufficientPrivilege,
                psycopg.errors.ActiveSqlTransaction,
            ) as exc:
                raise SqlBrowserError(
                    f"{_READ_ONLY_HINT}; refused: {str(exc).strip().splitlines()[0]}"
                ) from None
            except psycopg.Error as exc:
                raise SqlBrowserError(f"SQL error: {str(exc).strip().splitlines()[0]}") from None
        finally:
            conn.close()  # never committed: the server rolls the transaction back
        elapsed = time.perf_counter() - t0
        return self._result(columns, rows, limit, elapsed)

    # -- shared --------------------------------------------------------------------------
    def _result(
        self, columns: list[str], rows: Sequence[Sequence[Any]], limit: int, elapsed: float
    ) -> QueryResult:
        truncated = len(rows) > limit
        out = [[_jsonable(v) for v in row] for row in rows[:limit]]
        return QueryResult(
            columns=columns,
            rows=out,
            truncated=truncated,
            elapsed_s=elapsed,
            limit=limit,
            engine=self.backend,
        )
