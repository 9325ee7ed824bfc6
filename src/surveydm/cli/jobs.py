"""``surveydm jobs ...`` (the manager: submit, list, show, abort, retry, stats) and
``surveydm worker`` (a pilot any batch system can start as a plain job)."""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel

from surveydm.cli.common import clear_errors, console, registry
from surveydm.errors import SurveydmError
from surveydm.pipelines import TASK_MODULES

#: Modules that declare the standard task types (imported by workers and the manager).
DEFAULT_TASK_MODULES = TASK_MODULES

jobs_app = typer.Typer(
    help="Job system: submit, follow and account for jobs.", no_args_is_help=True
)

STATUS_STYLE = {
    "pending": "dim",
    "queued": "cyan",
    "running": "bold yellow",
    "waiting": "yellow",
    "done": "green",
    "done_partial": "yellow",
    "failed": "bold red",
    "failed_quality": "red",
    "skipped": "magenta",
    "aborted": "dim red",
}
OUTCOME_STYLE = {
    "ok": "green",
    "fault": "red",
    "quality": "red",
    "lost": "magenta",
    "aborted": "dim red",
    "running": "bold yellow",
}


def _load_tasks(extra: list[str] | None = None, *, required: bool = False) -> list[str]:
    """Import the default task modules (+ ``extra``); missing defaults are tolerated unless
    ``required`` (the manager can list jobs without the pipelines installed)."""
    from surveydm.orchestration import load_task_modules
    from surveydm.orchestration.tasks import UnknownTaskError

    loaded = []
    for mod in [*DEFAULT_TASK_MODULES, *(extra or [])]:
        try:
            loaded += load_task_modules([mod])
        except UnknownTaskError:
            if required or mod in (extra or []):
                raise
    return loaded


def _parse_date(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise SurveydmError(f"{option}: not an ISO date/time: {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _load_json_file(path: Path | None, option: str) -> dict[str, Any] | None:
    if path is None:
        return None
    text = Path(path).read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001
        raise SurveydmError(f"{option} {path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise SurveydmError(f"{option} {path}: must hold a mapping, not {type(data).__name__}")
    return data


def _fmt_time(dt: datetime | None) -> str:
    if dt is None:
        return ""
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _styled(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


@jobs_app.command("submit")
@clear_errors
def submit_cmd(
    task: str = typer.Argument(..., help="task type"),
    config: Path | None = typer.Option(None, "--config", help="configuration (JSON/YAML/TOML)"),
    input_file: Path | None = typer.Option(None, "--input", help="input (JSON/YAML/TOML)"),
    name: str | None = typer.Option(None, "--name", help="job name (default: the task type)"),
    key: str | None = typer.Option(
        None, "--key", help="identity of the work, unique per task type (e.g. obs_set=...)"
    ),
    production: int | None = typer.Option(None, "--production", help="production id"),
    module: list[str] = typer.Option([], "--module", help="extra task module to import"),
) -> None:
    """Create a job of type TASK, ready for the workers (exit status 2 if a job of that type
    with that --key exists: it names it)."""
    from surveydm.orchestration import JobManager

    _load_tasks(module)
    job_id = JobManager(registry()).submit(
        task,
        key=key,
        name=name,
        config=_load_json_file(config, "--config"),
        input=_load_json_file(input_file, "--input"),
        production_id=production,
    )
    console.print(f"submitted job [bold]{job_id}[/] ({task})")


@jobs_app.command("list")
@clear_errors
def list_cmd(
    status: list[str] = typer.Option([], "--status", help="only these statuses (repeatable)"),
    task: list[str] = typer.Option([], "--task", help="only these task types (repeatable)"),
    since: str | None = typer.Option(None, "--since", help="created at or after (ISO date)"),
    until: str | None = typer.Option(None, "--until", help="created before (ISO date)"),
    parent: int | None = typer.Option(None, "--parent", help="only sub-jobs of this job"),
    roots: bool = typer.Option(False, "--roots", help="only top-level jobs"),
    limit: int = typer.Option(50, "--limit", help="most rows shown (newest first)"),
) -> None:
    """List jobs, newest first."""
    from rich.table import Table

    from surveydm.orchestration import JobManager, JobQuery
    from surveydm.orchestration.status import ALL

    bad = [s for s in status if s not in ALL]
    if bad:
        raise SurveydmError(f"unknown status {bad}; known: {', '.join(ALL)}")
    query = JobQuery(
        statuses=tuple(status),
        tasks=tuple(task),
        since=_parse_date(since, "--since"),
        until=_parse_date(until, "--until"),
        parent=parent,
        roots=roots,
    )
    rows = JobManager(registry()).list(query, limit=limit)
    table = Table(title=f"jobs ({len(rows)} shown)")
    for col in (
        "id",
        "task",
        "name",
        "status",
        "parent",
        "attempts",
        "created",
        "ended",
        "wall s",
        "worker",
        "fault / quality",
    ):
        table.add_column(col, overflow="fold")
    for j in rows:
        table.add_row(
            str(j.id),
            j.task,
            j.name,
            _styled(j.status),
            "" if j.parent_id is None else str(j.parent_id),
            _attempts(j),
            _fmt_time(j.created),
            _fmt_time(j.ended),
            f"{j.wall_time:.2f}",
            j.worker or "",
            (j.quality or j.fault or j.reason or "")[:80],
        )
    console.print(table)


def _attempts(j: Any) -> str:
    """``attempts/max_attempts``, with the lost workers when there were any."""
    text = f"{j.attempts}/{j.max_attempts}"
    return text + (f" ({j.lost} lost)" if j.lost else "")


@jobs_app.command("show")
@clear_errors
def show_cmd(
    job_id: int = typer.Argument(..., help="job id"),
    children: int = typer.Option(30, "--children", help="most direct sub-jobs listed"),
) -> None:
    """Everything about one job: configuration, input, output, attempts, log, tracebacks, QC,
    sub-jobs."""
    from surveydm.orchestration import JobManager

    d = JobManager(registry()).detail(job_id, children=children, failed=0)
    _show_head(d)
    _show_attempts(d)
    for t in d.tags:
        console.print(Panel(t.value, title=f"{t.name} (attempt {t.attempt}, {_fmt_time(t.time)})"))
    _show_qc(d)
    _show_tree(d)


def _show_head(d: Any) -> None:
    from rich.table import Table

    from surveydm.orchestration.status import ACTIVE

    job = d.job
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    phase = f" (phase {job.phase})" if job.status in ACTIVE else ""
    fields = [
        ("task", job.task),
        ("name", job.name),
        ("key", job.key or ""),
        ("status", _styled(job.status) + phase),
        ("parent", str(job.parent_id or "")),
        ("depends on", ", ".join(map(str, d.depends_on))),
        ("production", str(job.production_id or "")),
        ("attempts", _attempts(job) + f", lost workers allowed {job.max_lost}"),
        ("created", _fmt_time(job.created)),
        ("queued", _fmt_time(job.queued)),
        ("started", _fmt_time(job.started)),
        ("ended", _fmt_time(job.ended)),
        ("wall time", f"{job.wall_time:.3f} s"),
        ("worker", f"{job.worker or ''} {job.host or ''} pid {job.pid or ''}"),
        ("lease expires", _fmt_time(job.lease_expires)),
        ("valid", str(job.valid)),
        ("fault", job.fault or ""),
        ("quality", job.quality or ""),
        ("reason", job.reason or ""),
    ]
    for k, v in fields:
        if v:
            head.add_row(k, v)
    console.print(Panel(head, title=f"job {job.id}"))
    for title, value in (
        ("configuration", job.config),
        ("input", job.input),
        ("output", job.output),
    ):
        console.print(Panel(json.dumps(value, indent=2, default=str), title=title))


def _show_attempts(d: Any) -> None:
    from rich.table import Table

    if not d.attempts:
        return
    table = Table(title="attempts")
    for col in ("#", "phase", "worker", "pid", "started", "ended", "wall s", "outcome", "fault"):
        table.add_column(col, overflow="fold")
    for a in d.attempts:
        outcome = a.outcome or "running"
        style = OUTCOME_STYLE.get(outcome, "")
        table.add_row(
            str(a.attempt),
            a.phase,
            f"{a.worker or ''}",
            "" if a.pid is None else str(a.pid),
            _fmt_time(a.started),
            _fmt_time(a.ended),
            "" if a.wall_time is None else f"{a.wall_time:.3f}",
            f"[{style}]{outcome}[/]" if style else outcome,
            (a.fault or "")[:120],
        )
    console.print(table)


def _show_qc(d: Any) -> None:
    from rich.table import Table

    if not d.qc:
        return
    table = Table(title="quality control")
    for col in ("check", "value", "min", "max", "units", "result", "reference", "plot"):
        table.add_column(col)
    for q in d.qc:
        table.add_row(
            q.check_name,
            "" if q.value is None else f"{q.value:.6g}",
            "" if q.min_value is None else f"{q.min_value:g}",
            "" if q.max_value is None else f"{q.max_value:g}",
            q.units,
            f"[{q.result.colour}]{q.result}[/]",
            q.reference or "",
            q.plot_file or "",
        )
    console.print(table)


def _show_tree(d: Any) -> None:
    from rich.tree import Tree

    summ = d.summary
    if not summ.total:
        return
    counts = ", ".join(f"{_styled(k)} {v}" for k, v in summ.counts.items() if v)
    tree = Tree(
        f"sub-jobs: {summ.total} in tree ({counts}); done {summ.done_fraction:.0%}; QC {summ.qc}"
    )
    for row in d.children:
        c = row.job
        tree.add(f"{c.id} {c.task} {c.name} {_styled(c.status)}")
    if d.n_children > len(d.children):
        more = d.n_children - len(d.children)
        tree.add(f"... {more} more direct sub-jobs (jobs list --parent {d.job.id})")
    console.print(tree)


@jobs_app.command("abort")
@clear_errors
def abort_cmd(job_id: int = typer.Argument(..., help="job id")) -> None:
    """Abort a job and every unfinished job of its sub-job tree."""
    from surveydm.orchestration import JobManager

    n = JobManager(registry()).abort(job_id)
    console.print(f"aborted {n} job(s)")


@jobs_app.command("retry")
@clear_errors
def retry_cmd(job_id: int = typer.Argument(..., help="job id")) -> None:
    """Re-queue a failed job, or every failed/skipped/aborted job of a super-job's tree (their
    attempt history stays; their budgets start afresh)."""
    from surveydm.orchestration import JobManager

    n = JobManager(registry()).retry(job_id)
    console.print(f"re-queued {n} job(s)")


@jobs_app.command("stats")
@clear_errors
def stats_cmd(
    since: str | None = typer.Option(None, "--since", help="jobs created at or after"),
    until: str | None = typer.Option(None, "--until", help="jobs created before"),
) -> None:
    """Accounting per task type over all past jobs: counts, failures, wall time."""
    from rich.table import Table

    from surveydm.orchestration import JobManager

    rows = JobManager(registry()).stats(
        since=_parse_date(since, "--since"), until=_parse_date(until, "--until")
    )
    table = Table(title="jobs per task type")
    for col in (
        "task",
        "jobs",
        "done",
        "done partial",
        "failed",
        "failed quality",
        "skipped",
        "aborted",
        "active",
        "had faults",
        "lost workers",
        "wall total s",
        "wall mean s",
    ):
        table.add_column(col, justify="left" if col == "task" else "right")
    for r in rows:
        table.add_row(
            r.task,
            str(r.count),
            str(r.done),
            str(r.done_partial),
            str(r.failed),
            str(r.failed_quality),
            str(r.skipped),
            str(r.aborted),
            str(r.active),
            str(r.faults),
            str(r.lost),
            f"{r.wall_time_total:.2f}",
            "" if r.wall_time_mean is None else f"{r.wall_time_mean:.3f}",
        )
    console.print(table)


@clear_errors
def worker_cmd(
    processes: int = typer.Option(1, "--processes", "-p", help="pilot processes on this host"),
    task: list[str] = typer.Option([], "--task", help="only claim this task type (repeatable)"),
    once: bool = typer.Option(
        False, "--once", help="exit when no job is ready (drain), instead of polling forever"
    ),
    executor: str = typer.Option("local", "--executor", help="local or dask"),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:8786) for --executor dask"
    ),
    root: int | None = typer.Option(None, "--root", help="only run this job tree"),
    module: list[str] = typer.Option([], "--module", help="extra task module to import"),
    lease: float | None = typer.Option(None, "--lease", help="lease seconds (default: settings)"),
    poll: float = typer.Option(1.0, "--poll", help="seconds between polls when idle"),
) -> None:
    """Run a pilot: claim ready jobs from the registry and execute them (Ctrl-C or SIGTERM
    stops after the current job)."""
    import os

    from surveydm.orchestration import RunOptions, Worker, run_local
    from surveydm.orchestration.tasks import TASKS

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # a job uses one core (astroscrappy's OpenMP)
    _load_tasks(module)
    if not TASKS:
        raise SurveydmError("no task types found: pass --module with the task definitions")
    if executor not in ("local", "dask"):
        raise SurveydmError(f"--executor must be local or dask, not {executor!r}")
    if executor == "dask" and scheduler is None:
        raise SurveydmError("--executor dask needs --scheduler ADDRESS")
    reg = registry()
    url = reg.url
    reg.dispose()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    opts = RunOptions(
        processes=processes,
        task_filter=list(task) or None,
        modules=module,
        until_idle=once,
        lease_seconds=lease,
        poll_interval=poll,
        stop=stop,
    )
    if executor == "dask":
        from surveydm.orchestration import run_dask

        rep = run_dask(url, scheduler=scheduler, root_job_id=root, options=opts)
        console.print(f"dask executor finished: {rep.counts}")
        return
    if processes > 1:
        try:
            rep = run_local(url, root, opts)
        except KeyboardInterrupt:
            return
        console.print(f"pilots finished: {rep.counts}")
        return
    worker = Worker(url, name=None, **opts.worker_kwargs(root))
    console.print(f"pilot {worker.name} claiming {', '.join(worker.tasks)}")
    try:
        report = worker.run(once=once, stop=stop)
    except KeyboardInterrupt:
        report = worker.report
    finally:
        worker.close()
    console.print(f"pilot {worker.name}: executed {report.executed} step(s) {report.outcomes}")


def register(app: typer.Typer) -> None:
    """Add ``surveydm jobs ...`` and ``surveydm worker`` to ``app``."""
    app.add_typer(jobs_app, name="jobs")
    app.command("worker")(worker_cmd)
