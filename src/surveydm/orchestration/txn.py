"""Transactions of the job system: the session a job transition runs in, and the retry of
transient database errors (server restart, ``pg_terminate_backend``, SQLite busy)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from surveydm.db import Registry

log = logging.getLogger("surveydm.worker")

R = TypeVar("R")

_ASYNC_COMMIT = text("SET LOCAL synchronous_commit TO OFF")


def is_transient_db_error(exc: BaseException) -> bool:
    """True for errors worth retrying: lost connections, SQLite busy, serialization issues."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def with_db_retry(
    fn: Callable[[], R], *, what: str, attempts: int = 8, first_delay: float = 0.05
) -> R:
    """Call ``fn`` (one whole transaction), retrying transient database errors with
    exponential back-off (``first_delay * 2**i`` seconds, ``attempts`` tries in all)."""
    delay = first_delay
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            if not is_transient_db_error(exc) or i == attempts - 1:
                raise
            log.warning("%s: database error (%s); retrying in %.2f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


@contextmanager
def job_session(registry: Registry, *, durable: bool = False) -> Iterator[Session]:
    """A write transaction of the job system.

    On PostgreSQL, unless ``durable``, it runs with ``synchronous_commit = off``: the commit
    returns before the WAL is flushed to disk. A server crash can then lose the last fraction of
    a second of job transitions, never consistency: each transition (and the products a task
    registers in it through ``on_commit``) is lost or kept as a whole, and a lost one only means
    the job runs again, exactly as after a worker crash. This removes one disk flush per job.
    """
    with registry.session() as s:
        if not durable and registry.dialect == "postgresql":
            s.execute(_ASYNC_COMMIT)
        yield s
