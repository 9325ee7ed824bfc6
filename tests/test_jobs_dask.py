"""The Dask distributed executor against a LocalCluster (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from surveydm.db.models.production import Product
from surveydm.orchestration import load_task_modules, run_dask, submit
from surveydm.orchestration.status import JobStatus as S

load_task_modules(["jobtasks"])


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_executor_runs_graph(registry, dask_client):
    root = submit(registry, "t_pipeline", config={"extra": 5})
    mixed = submit(registry, "t_mixed")
    flaky = submit(registry, "t_flaky", config={"faults": 1})
    report = run_dask(
        registry.url, client=dask_client, lease_seconds=5, poll_interval=0.05, timeout=60
    )
    assert report.finished
    from surveydm.orchestration import status_summary

    assert status_summary(registry, root).counts[S.DONE] == 10
    mixed_summary = status_summary(registry, mixed)
    assert mixed_summary.counts[S.FAILED_QUALITY] == 1 and mixed_summary.counts[S.SKIPPED] == 2
    assert status_summary(registry, flaky).status == S.DONE
    with registry.session(write=False) as s:
        n, distinct = s.execute(
            select(func.count(), func.count(func.distinct(Product.job_id))).where(
                Product.product_type == "t_record"
            )
        ).one()
        workers = s.execute(
            select(func.count()).select_from(Product).where(Product.product_type == "t_flaky")
        ).scalar_one()
    assert n == distinct == 11  # 10 of the pipeline + 1 independent of t_mixed
    assert workers == 1


def test_dask_executor_tree_only(registry, dask_client):
    a = submit(registry, "t_many", config={"n": 6})
    b = submit(registry, "t_many", config={"n": 3})
    report = run_dask(
        registry.url,
        client=dask_client,
        root_job_id=a,
        lease_seconds=5,
        poll_interval=0.05,
        timeout=60,
    )
    assert report.finished and report.summary.status == S.DONE
    assert report.counts[S.DONE] == 6
    from surveydm.orchestration import status_summary

    assert status_summary(registry, b).status == S.QUEUED  # other trees untouched
