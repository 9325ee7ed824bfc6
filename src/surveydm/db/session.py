"""Engines and sessions for the registry on SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on; write transactions start with
``BEGIN IMMEDIATE`` so that two writers never both hold a read snapshot they then try to upgrade
(which SQLite answers with an immediate ``database is locked``). PostgreSQL uses a small pool per
process (``pool_size`` 2, overflow 2) with ``pool_pre_ping`` so that a terminated backend is
replaced on next use, keeping hundreds of workers within the server's connection limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 60_000


def make_engine(
    url: str, *, pool_size: int = 2, max_overflow: int = 2, echo: bool = False
) -> Engine:
    """Create an engine for ``url`` configured for surveydm's access pattern.

    Raises:
        sqlalchemy.exc.ArgumentError: the URL cannot be parsed.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Take transaction control away from pysqlite so BEGIN is ours (SQLAlchemy recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        immediate = conn.get_execution_options().get("sqlite_immediate", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Registry:
    """Handle on one registry database: an engine plus session factories.

    ``registry.session()`` opens a write session (``BEGIN IMMEDIATE`` on SQLite) committed on
    success and rolled back on error; ``registry.session(write=False)`` opens a read session
    whose changes are discarded. Loaded objects stay readable after the block (detached).
    """

    def __init__(self, url: str, **engine_kwargs: object) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)  # type: ignore[arg-type]
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session in one transaction; commits on success when ``write``, else rolls back."""
        with self._factory() as session:
            if self.dialect == "sqlite":
                session.connection(execution_options={"sqlite_immediate": write})
            try:
                yield session
                if write:
                    session.commit()
            except BaseException:
                session.rollback()
                raise
            # closing a read session ends its transaction without expiring what it loaded:
            # objects stay readable (detached) after the block.

    def dispose(self) -> None:
        """Close all pooled connections (call in a child process after fork)."""
        self.engine.dispose()
