"""Migration 0009: the partial claim index keeps every job row, is used by the claim, and
goes away on downgrade (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, select, text

from surveydm.db import Registry
from surveydm.db.migrate import alembic_config, upgrade
from surveydm.db.models.jobs import Job
from surveydm.orchestration import Worker, load_task_modules, submit

load_task_modules(["jobtasks"])


def _index_names(url: str) -> set[str]:
    engine = create_engine(url)
    names = {ix["name"] for ix in inspect(engine).get_indexes("job")}
    engine.dispose()
    return names


def test_0009_claim_index_keeps_rows_and_orders_claims(db_url: str) -> None:
    command.downgrade(alembic_config(db_url), "0005")
    assert "ix_job_queued_id" not in _index_names(db_url)
    reg = Registry(db_url)
    ids = [submit(reg, "t_noop") for _ in range(6)]
    w = Worker(reg, tasks=["t_noop"], lease_seconds=60)
    w.step()  # the oldest job runs before the index exists
    reg.dispose()

    upgrade(db_url)
    assert "ix_job_queued_id" in _index_names(db_url)
    reg = Registry(db_url)
    with reg.session(write=False) as s:
        assert s.scalars(select(Job.id).order_by(Job.id)).all() == ids  # every row kept
        if reg.dialect == "postgresql":  # (SQLite sorts the status index's queued rows)
            s.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                s.execute(
                    text(
                        "EXPLAIN SELECT id FROM job WHERE status = 'queued' ORDER BY id "
                        "LIMIT 2 FOR UPDATE SKIP LOCKED"
                    )
                ).scalars()
            )
            assert "ix_job_queued_id" in plan, plan
    w = Worker(reg, tasks=["t_noop"], lease_seconds=60, max_batch=2)
    w._batch = 2
    claimed = w.claim(2)
    assert [c.id for c in claimed] == ids[1:3]  # still the oldest ready jobs first
    reg.dispose()

    command.downgrade(alembic_config(db_url), "0005")
    assert "ix_job_queued_id" not in _index_names(db_url)
    upgrade(db_url)
