"""The job system: database-backed orchestration with sub-jobs, dependencies, retries and
pilots (seed 000 section 6.2, BrownThrower; seed 004 section 2.1, the Pan-STARRS processing
database). Knows nothing about astronomy; imports only ``db``, ``config`` and ``errors``.

Declare task types with :class:`Task` + :func:`register_task`; create, follow and act on jobs
with :class:`JobManager` (or the functions :func:`submit`, :func:`status_summary`,
:func:`abort`, :func:`retry`, :func:`task_stats`); run them with :class:`Worker` pilots
(``surveydm worker``), :func:`run_local` or :func:`run_dask`, configured by
:class:`RunOptions`. See ``docs/jobs.md``.

Modules, one concept each: ``status`` (the vocabulary), ``records`` (typed records and named
errors), ``tasks`` (declaring tasks), ``queue`` (submit, claim, lease), ``transitions``
(complete, fail, lose, propagate), ``sweep``, ``admin`` (abort, retry), ``reads`` (the one read
API), ``manager`` (this face), ``txn``, ``steps`` (executing a claim), ``worker`` (pilots),
``executor``, ``local``, ``dask_executor``.
"""

from surveydm.orchestration import status
from surveydm.orchestration.executor import RunOptions, RunReport
from surveydm.orchestration.local import run_local
from surveydm.orchestration.manager import (
    JobManager,
    abort,
    retry,
    status_summary,
    submit,
    task_stats,
)
from surveydm.orchestration.records import (
    AttemptRecord,
    DuplicateJobError,
    JobDetail,
    JobNotFoundError,
    JobQuery,
    JobRecord,
    JobStateError,
    SubJobInfo,
    Summary,
    TaskStats,
    job_key,
)
from surveydm.orchestration.status import AttemptOutcome, JobStatus, Phase
from surveydm.orchestration.steps import execute_claim
from surveydm.orchestration.tasks import (
    TASKS,
    JobContext,
    QualityFailure,
    SubJobRef,
    Task,
    TaskDefinitionError,
    UnknownTaskError,
    get_task,
    load_task_modules,
    qc_result,
    register_task,
)
from surveydm.orchestration.worker import Worker, WorkerReport

__all__ = [
    "TASKS",
    "AttemptOutcome",
    "AttemptRecord",
    "DuplicateJobError",
    "JobContext",
    "JobDetail",
    "JobManager",
    "JobNotFoundError",
    "JobQuery",
    "JobRecord",
    "JobStateError",
    "JobStatus",
    "Phase",
    "QualityFailure",
    "RunOptions",
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
    "job_key",
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
