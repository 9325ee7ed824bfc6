"""The job system: database-backed orchestration with sub-jobs, dependencies, retries and
pilots (seed 000 section 6.2, BrownThrower; seed 004 section 2.1, the Pan-STARRS processing
database). Knows nothing about astronomy; imports only ``db``, ``config`` and ``errors``.

Declare task types with :class:`Task` + :func:`register_task`; create jobs with :func:`submit`;
run them with :class:`Worker` pilots (``surveydm worker``), :func:`run_local` or
:func:`run_dask`; follow them with :func:`status_summary`; act on them with :func:`abort` and
:func:`retry`. See ``docs/jobs.md``.
"""

from surveydm.orchestration import status
from surveydm.orchestration.local import RunReport, run_local
from surveydm.orchestration.store import (
    JobNotFoundError,
    JobStateError,
    Summary,
    TaskStats,
    abort,
    retry,
    status_summary,
    submit,
    task_stats,
)
from surveydm.orchestration.tasks import (
    TASKS,
    JobContext,
    QualityFailure,
    SubJobInfo,
    SubJobRef,
    Task,
    TaskDefinitionError,
    UnknownTaskError,
    get_task,
    load_task_modules,
    qc_result,
    register_task,
)
from surveydm.orchestration.worker import Worker, WorkerReport, execute_claim

__all__ = [
    "TASKS",
    "JobContext",
    "JobNotFoundError",
    "JobStateError",
    "QualityFailure",
    "RunReport",
    "SubJobInfo",
    "SubJobRef",
    "Summary",
    "Task",
    "TaskDefinitionError",
    "TaskStats",
    "UnknownTaskError",
    "Worker",
    "WorkerReport",
    "abort",
    "execute_claim",
    "get_task",
    "load_task_modules",
    "qc_result",
    "register_task",
    "retry",
    "run_dask",
    "run_local",
    "status",
    "status_summary",
    "submit",
    "task_stats",
]


def run_dask(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    """Run jobs on a Dask cluster; see :func:`surveydm.orchestration.dask_executor.run_dask`
    (imported lazily: ``distributed`` is only needed when it is used)."""
    from surveydm.orchestration.dask_executor import run_dask as _run_dask

    return _run_dask(*args, **kwargs)
