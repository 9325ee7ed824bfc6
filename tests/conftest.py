"""Shared fixtures. Every database test takes the ``registry`` fixture (or ``db_url``) and so runs
twice: on SQLite and on PostgreSQL.

PostgreSQL: ``SURVEYDM_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
is the admin connection; each test gets a fresh database created from it and dropped after.
When the server is unreachable the PostgreSQL half is skipped, unless
``SURVEYDM_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns that into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "SURVEYDM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("SURVEYDM_REQUIRE_POSTGRES") == "1"


def _pg_admin():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        with _pg_admin().connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception as exc:  # noqa: BLE001
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable at {PG_ADMIN_URL}: {exc}")
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, migrated registry database on each engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
        upgrade(url)
        yield url
        return
    if not request.getfixturevalue("pg_available"):
        pytest.skip("PostgreSQL not reachable")
    name = f"surveydm_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    """A :class:`Registry` on a fresh migrated database (SQLite and PostgreSQL)."""
    reg = Registry(db_url)
    yield reg
    reg.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings with a private home (archive) and the parametrised registry."""
    return Settings(home=tmp_path / "home", database_url=db_url)


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests save screenshots and plots (kept by CI)."""
    path = Path(os.environ.get("SURVEYDM_TEST_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the tiny test camera's instrument file (see ``test_ingest_support``)."""
    from test_ingest_support import tiny_instrument

    return tiny_instrument(tmp_path_factory.mktemp("inst") / "paucam-tiny.yaml")
