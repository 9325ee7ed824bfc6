"""Waking idle pilots: PostgreSQL ``LISTEN/NOTIFY``, exponential back-off elsewhere.

A transaction that makes jobs ready (submits them, queues sub-jobs, promotes dependants, wakes a
super-job for its epilog, re-queues a lost or retried job) calls :func:`announce_ready`. On
PostgreSQL that is ``NOTIFY surveydm_job_ready``: the server delivers it to every listening
connection **when the transaction commits** (never for a rolled-back one; several in one
transaction are folded into one), so a pilot is never woken before the jobs it is told about
can be claimed.

An idle pilot waits with :class:`IdleWait`: on PostgreSQL it listens on its own autocommit
connection and returns as soon as a notification arrives, or after ``max_wait`` at the latest
(jobs whose retry back-off ``not_before`` passed become ready without a notification; a lost
notification costs at most that delay). On SQLite (no notifications) it sleeps with exponential
back-off: ``min_wait`` after the last job, doubling up to ``max_wait``, so a pilot that just
ran out of work looks again within milliseconds while a long-idle one costs a query every
``max_wait`` seconds. A broken listening connection (server restart) falls back to back-off
and is reopened on the next wait.

The method is procrastinate's and pg-boss's (``LISTEN`` for latency, polling as the safety net);
PostgreSQL documentation, SQL commands NOTIFY and LISTEN.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger("surveydm.worker")

#: The PostgreSQL notification channel of "jobs became ready".
CHANNEL = "surveydm_job_ready"
_NOTIFY = text(f"NOTIFY {CHANNEL}")


def announce_ready(session: Session) -> None:
    """Tell idle pilots that jobs became ready when ``session``'s transaction commits
    (PostgreSQL ``NOTIFY``; nothing on SQLite, whose pilots poll with back-off)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY)


class IdleWait:
    """How an idle pilot waits for work (see the module docstring).

    Args:
        url: the registry's SQLAlchemy URL; a PostgreSQL URL gets a listening connection.
        min_wait: seconds of the first back-off sleep after the last job (SQLite, or PostgreSQL
            while the listening connection is broken).
        max_wait: longest wait, in seconds (the back-off's ceiling; on PostgreSQL the longest
            wait without a notification).
        stop: an event that ends a wait early when set (the pilot's stop event).
    """

    def __init__(
        self,
        url: str,
        *,
        min_wait: float = 0.005,
        max_wait: float = 0.5,
        stop: threading.Event | Any | None = None,
    ) -> None:
        if min_wait <= 0 or max_wait < min_wait:
            raise ValueError(f"need 0 < min_wait <= max_wait, got {min_wait}, {max_wait}")
        self.min_wait = float(min_wait)
        self.max_wait = float(max_wait)
        self.stop = stop
        self._next = self.min_wait
        parsed = make_url(url)
        self._pg_dsn: str | None = None
        if parsed.get_backend_name() == "postgresql":
            self._pg_dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: Any = None
        #: Notifications received (for tests and benchmarks).
        self.notifications = 0

    @property
    def listening(self) -> bool:
        """True while a PostgreSQL listening connection is open."""
        return self._conn is not None

    def reset(self) -> None:
        """Work was found: the next back-off starts again from ``min_wait``."""
        self._next = self.min_wait

    def _listen(self) -> Any:
        if self._pg_dsn is None:
            return None
        if self._conn is None:
            import psycopg

            try:
                conn = psycopg.connect(self._pg_dsn, autocommit=True, connect_timeout=5)
                conn.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error as exc:
                log.warning("cannot listen for ready jobs (%s); polling with back-off", exc)
                return None
            self._conn = conn
        return self._conn

    def wait(self) -> bool:
        """Wait for work; True when woken by a notification (False: timed out, or back-off)."""
        conn = self._listen()
        if conn is None:
            return self._sleep()
        import psycopg

        try:
            woken = False
            for _ in conn.notifies(timeout=self.max_wait, stop_after=1):
                woken = True
            if woken:  # drop the ones that queued up meanwhile: one claim answers them all
                for _ in conn.notifies(timeout=0.0):
                    self.notifications += 1
                self.notifications += 1
            return woken
        except psycopg.Error as exc:
            log.warning("listening connection lost (%s); polling with back-off", exc)
            self.close()
            return self._sleep()

    def _sleep(self) -> bool:
        delay, self._next = self._next, min(self._next * 2, self.max_wait)
        if self.stop is not None and hasattr(self.stop, "wait"):
            self.stop.wait(delay)
        else:
            time.sleep(delay)
        return False

    def close(self) -> None:
        """Close the listening connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()
