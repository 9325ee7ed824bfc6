"""Benchmark of the job system on SQLite and PostgreSQL (prints a table; no assertions).

Measures, per engine:
- throughput: completed trivial (no-op) jobs per second with 1, 2, 8 and 32 pilot processes
  (rate = jobs / (last end - first start) from the job rows; the jobs are released once every
  pilot is up and idle, so process start-up is excluded; target >= 5,000/s on PostgreSQL with 8
  pilots);
- CPU per job: pilot and database-server CPU milliseconds per no-op job with one pilot
  (independent of the machine's load: 1000 / that is the jobs/s one core can give);
- graph creation: seconds for a prolog to create a 100,000-job graph with dependencies (every
  job i > 0 depends on job (i - 1) // 2, a binary tree; target < 20 s);
- status summary: milliseconds for :func:`status_summary` of a super-job with 10,000 sub-jobs
  in mixed statuses (median of 20; target < 10 ms);
- the same dependency graph of no-op tasks run by our pilots and by Dask distributed on a
  LocalCluster (2 worker processes), printing our throughput as a ratio of Dask's.

Usage::

    python benchmarks/bench_jobs.py [--engines sqlite,postgresql] [--jobs 5000]
        [--workers 1,2,8,32] [--graph 100000] [--summary 10000] [--dask-graph 5000]

PostgreSQL: ``SURVEYDM_BENCH_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) is the admin connection; the benchmark
creates and drops its own database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from surveydm.orchestration import JobContext, Task, register_task  # noqa: E402


@register_task
class BenchNoop(Task):
    """A trivial job."""

    name = "bench_noop"


@register_task
class BenchGraph(Task):
    """Super-job whose prolog creates ``config["n"]`` no-op sub-jobs; with ``config["tree"]``
    job i > 0 depends on job (i - 1) // 2 (a binary tree)."""

    name = "bench_graph"

    def prolog(self, ctx: JobContext) -> None:
        refs = []
        tree = bool(ctx.config.get("tree", True))
        for i in range(int(ctx.config["n"])):
            after = [refs[(i - 1) // 2]] if tree and i else []
            refs.append(ctx.add_subjob("bench_noop", name=f"n{i}", after=after))


def _make_db(engine: str, tmp: Path) -> tuple[str, Any]:
    """(url, cleanup) of a fresh database with the registry schema."""
    from sqlalchemy import create_engine

    from scratch_postgres import scratch_database
    from surveydm.db import models  # noqa: F401
    from surveydm.db.base import Base

    if engine == "sqlite":
        url, cleanup = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.sqlite'}", None
    else:
        url, cleanup = scratch_database()
    eng = create_engine(url)
    # Schema from the models (as the tests do until the Alembic revision exists).
    Base.metadata.create_all(eng)
    eng.dispose()
    return url, cleanup


def _tree_rate(registry: Any, root: int) -> tuple[float, int]:
    """(jobs per second between the first start and the last end, jobs done) of a tree."""
    from sqlalchemy import func, select

    from surveydm.db.models.jobs import Job

    with registry.session(write=False) as s:
        first, last, n = s.execute(
            select(func.min(Job.started), func.max(Job.ended), func.count()).where(
                Job.root_id == root, Job.id != root, Job.status == "done"
            )
        ).one()
    span = (last - first).total_seconds()
    return (n / span if span > 0 else float("nan")), int(n)


def _prepare_tree(registry: Any, n: int, tree: bool) -> int:
    """A super-job with ``n`` no-op sub-jobs already created (its prolog run here)."""
    from surveydm.orchestration import Worker, submit

    root = submit(registry, "bench_graph", config={"n": n, "tree": tree})
    w = Worker(registry, tasks=["bench_graph"], lease_seconds=600)
    w.step()
    w.close()
    return root


#: Most jobs a pilot claims at once in the benchmark (``--max-batch``; the Worker's default).
MAX_BATCH = 256


def _hold_back(registry: Any, root: int, until: Any) -> None:
    """Make the ready sub-jobs of ``root`` claimable only from ``until`` (``not_before``), and
    wake the pilots (``NOTIFY`` on PostgreSQL) when that is now."""
    from sqlalchemy import update

    from surveydm.db.models.jobs import Job
    from surveydm.orchestration.wakeup import announce_ready

    with registry.session() as s:
        s.execute(
            update(Job)
            .where(Job.root_id == root, Job.id != root, Job.status == "queued")
            .values(not_before=until)
        )
        announce_ready(s)


def _wait_for_idle_pilots(url: str, pilots: int, timeout: float) -> None:
    """Wait until ``pilots`` pilots are up and idle: on PostgreSQL until that many listen for
    wake-ups (an idle pilot's ``LISTEN`` connection); on SQLite (no such sign) a fixed delay of
    a quarter of ``timeout``."""
    if not url.startswith("postgresql"):
        time.sleep(timeout / 4)
        return
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    t_end = time.monotonic() + timeout
    try:
        with eng.connect() as c:
            while time.monotonic() < t_end:
                n = c.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND query LIKE 'LISTEN %'"
                    )
                ).scalar_one()
                c.rollback()
                if n >= pilots:
                    return
                time.sleep(0.05)
    finally:
        eng.dispose()


def bench_throughput(url: str, jobs: int, workers: list[int], tree: bool = False) -> dict:
    """{pilots: (jobs/s, jobs done, wall seconds incl. start-up, ok)}. The pilots start on a
    queue whose jobs are held back (``not_before`` in the future); once every pilot is up and
    idle the jobs are released, so the rate (first start to last end, from the job rows) is
    that of running pilots, not of process start-up (8 processes starting on a loaded 2-core
    machine take seconds, as long as the whole run)."""
    import threading
    from datetime import timedelta

    from surveydm.db import Registry
    from surveydm.db.base import utcnow
    from surveydm.orchestration import run_local

    reg = Registry(url)
    out = {}
    for w in workers:
        root = _prepare_tree(reg, jobs, tree)
        _hold_back(reg, root, utcnow() + timedelta(hours=1))
        result: dict[str, Any] = {}

        def run(root: int = root, w: int = w, result: dict[str, Any] = result) -> None:
            result["report"] = run_local(
                url, root, processes=w, lease_seconds=60, poll_interval=0.01, max_batch=MAX_BATCH
            )

        t0 = time.perf_counter()
        th = threading.Thread(target=run)
        th.start()
        _wait_for_idle_pilots(url, w, timeout=10 + 2 * w)
        _hold_back(reg, root, utcnow())
        th.join()
        wall = time.perf_counter() - t0
        rate, n = _tree_rate(reg, root)
        out[w] = (rate, n, wall, result["report"].ok)
    reg.dispose()
    return out


def _backend_cpu(url: str) -> float:
    """CPU seconds (user + system) used so far by the PostgreSQL server processes of the
    database of ``url``, read from /proc (the server runs on this machine); 0 on SQLite."""
    if not url.startswith("postgresql"):
        return 0.0
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as c:
        pids = c.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ).scalars()
        pids = list(pids)
    eng.dispose()
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def bench_cpu_per_job(url: str, jobs: int, tree: bool) -> tuple[float, float, float]:
    """(pilot CPU ms per job, database-server CPU ms per job, wall seconds): one pilot in this
    process drains ``jobs`` no-op jobs. CPU time does not depend on what else runs on the
    machine, so ``1000 / (pilot + server ms)`` is the throughput one core can give, a figure
    that stays meaningful on a loaded machine where jobs/s does not."""
    from surveydm.db import Registry
    from surveydm.orchestration import Worker

    reg = Registry(url)
    _prepare_tree(reg, jobs, tree)
    w = Worker(reg, lease_seconds=600, max_batch=MAX_BATCH, poll_interval=0.01)  # + the epilog
    w.sweep()  # opens the pool's connection (its server process is then measured)
    server0, client0, t0 = _backend_cpu(url), time.process_time(), time.perf_counter()
    w.run(once=True)
    wall = time.perf_counter() - t0
    client, server = time.process_time() - client0, _backend_cpu(url) - server0
    w.close()
    reg.dispose()
    return 1000 * client / jobs, 1000 * server / jobs, wall


def bench_graph_creation(url: str, n: int) -> tuple[float, float]:
    """(seconds to create the graph, seconds to abort it afterwards)."""
    from surveydm.db import Registry
    from surveydm.orchestration import Worker, abort, status_summary, submit

    reg = Registry(url)
    root = submit(reg, "bench_graph", config={"n": n, "tree": True})
    w = Worker(reg, tasks=["bench_graph"], lease_seconds=600)
    t0 = time.perf_counter()
    w.step()  # prolog (Python) + bulk insert of n jobs and n - 1 dependencies
    dt = time.perf_counter() - t0
    w.close()
    summ = status_summary(reg, root)
    if summ.total != n or summ.counts["queued"] != 1:
        raise RuntimeError(f"graph not created as expected: {summ}")
    t0 = time.perf_counter()
    abort(reg, root)  # also keeps the following runs free of 100,000 pending jobs
    dt_abort = time.perf_counter() - t0
    reg.dispose()
    return dt, dt_abort


def bench_summary(url: str, n: int, repeat: int = 20) -> float:
    from sqlalchemy import update

    from surveydm.db import Registry
    from surveydm.db.models.jobs import Job
    from surveydm.orchestration import abort, status_summary

    reg = Registry(url)
    root = _prepare_tree(reg, n, tree=False)
    with reg.session() as s:  # mixed statuses, as during a night
        s.execute(update(Job).where(Job.root_id == root, Job.id % 3 == 0).values(status="done"))
        s.execute(update(Job).where(Job.root_id == root, Job.id % 7 == 0).values(status="running"))
        s.execute(update(Job).where(Job.root_id == root, Job.id % 11 == 0).values(status="failed"))
    status_summary(reg, root)  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        summ = status_summary(reg, root)
        times.append(time.perf_counter() - t0)
    assert summ.total == n
    abort(reg, root)
    reg.dispose()
    return statistics.median(times) * 1000


def bench_dask(n: int) -> float:
    """Tasks per second of the same binary-tree graph of no-ops on a Dask LocalCluster."""
    from distributed import Client, LocalCluster, wait

    def noop(*_deps: Any) -> None:
        return None

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.submit(noop).result()  # warm up
        t0 = time.perf_counter()
        futs: list[Any] = []
        for i in range(n):
            deps = [futs[(i - 1) // 2]] if i else []
            futs.append(client.submit(noop, *deps, pure=False))
        wait(futs)
        return n / (time.perf_counter() - t0)


def main() -> None:
    global MAX_BATCH  # noqa: PLW0603  (read by the measurements, set once here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--jobs", type=int, default=5000, help="jobs per throughput run")
    ap.add_argument("--workers", default="1,2,8,32")
    ap.add_argument("--graph", type=int, default=100_000)
    ap.add_argument("--summary", type=int, default=10_000)
    ap.add_argument("--dask-graph", type=int, default=5000)
    ap.add_argument("--max-batch", type=int, default=MAX_BATCH, help="most jobs per claim")
    args = ap.parse_args()
    MAX_BATCH = args.max_batch
    workers = [int(x) for x in args.workers.split(",")]
    rows: list[tuple[str, ...]] = []

    def add(*row: str) -> None:
        """A row of the table, with the 1-minute load average as it is measured."""
        rows.append((*row, f"{os.getloadavg()[0]:.1f}"))
        print(rows[-1], flush=True)

    ours_graph_rate: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for engine in args.engines.split(","):
            url, cleanup = _make_db(engine, tmp)
            try:
                for shape in ("flat", "tree"):
                    client, server, wall = bench_cpu_per_job(url, args.jobs, shape == "tree")
                    add(
                        engine,
                        f"CPU per job, 1 pilot, {shape}",
                        f"{client + server:.3f} ms",
                        f"pilot {client:.3f} + server {server:.3f} ms: "
                        f"{1000 / (client + server):,.0f} jobs/s per core",
                    )
                for w, (rate, n, wall, ok) in bench_throughput(url, args.jobs, workers).items():
                    target = " (target >= 5000)" if engine == "postgresql" and w == 8 else ""
                    add(
                        engine,
                        f"throughput, {w} pilots",
                        f"{rate:,.0f} jobs/s",
                        f"{n} jobs, {wall:.1f} s incl. start-up, ok={ok}{target}",
                    )
                dt, dt_abort = bench_graph_creation(url, args.graph)
                add(engine, f"create {args.graph:,}-job graph", f"{dt:.2f} s", "target < 20 s")
                add(engine, "abort that graph", f"{dt_abort:.2f} s", "")
                ms = bench_summary(url, args.summary)
                add(
                    engine,
                    f"status summary, {args.summary:,} sub-jobs",
                    f"{ms:.1f} ms",
                    "median of 20; target < 10 ms",
                )
                g = bench_throughput(url, args.dask_graph, [8], tree=True)[8]
                ours_graph_rate[engine] = g[0]
                add(
                    engine,
                    f"{args.dask_graph:,}-job tree graph, 8 pilots",
                    f"{g[0]:,.0f} jobs/s",
                    f"ok={g[3]}",
                )
            finally:
                if cleanup:
                    cleanup()
    dask_rate = bench_dask(args.dask_graph)
    add(
        "dask",
        f"{args.dask_graph:,}-task tree graph, LocalCluster 2 procs",
        f"{dask_rate:,.0f} tasks/s",
        "reference (same graph, this run)",
    )
    for engine, rate in ours_graph_rate.items():
        add(engine, "ours / Dask on the same graph", f"{rate / dask_rate:.2f}x", "")

    from rich.console import Console
    from rich.table import Table

    table = Table(title="surveydm job system benchmark")
    for col in ("engine", "measure", "value", "notes", "load"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    Console().print(table)


if __name__ == "__main__":
    # Run as the importable module ``bench_jobs`` so pilot processes (which import task
    # modules by name) find the tasks.
    import bench_jobs

    bench_jobs.main()
