"""A throw-away PostgreSQL database for a benchmark run, dropped afterwards.

The server is ``SURVEYDM_BENCH_POSTGRES_URL`` (default: the local ``postgres`` database,
trust auth), on which a database ``<prefix>_<random>`` is created.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

from sqlalchemy import create_engine, text

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def scratch_database(prefix: str = "surveydm_bench") -> tuple[str, Callable[[], None]]:
    """``(url, drop)`` of a new empty database; ``drop()`` ends its sessions and drops it.

    Raises:
        sqlalchemy.exc.OperationalError: the server does not answer.
    """
    admin_url = os.environ.get("SURVEYDM_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop
