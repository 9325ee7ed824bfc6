"""What the job system hands around: typed records of jobs, claims, attempts and summaries, and
its named errors.

Records are plain dataclasses built from database rows (``Record.from_row(row)``, as
procrastinate's ``Job.from_row``); every other module of the job system imports them from here,
so the modules that read and write rows (queue, transitions, sweep, admin, reads) and the one
that declares tasks (:mod:`~surveydm.orchestration.tasks`) never need to import each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from surveydm.errors import SurveydmError
from surveydm.orchestration.qc import QCResult
from surveydm.orchestration.status import AttemptOutcome, JobStatus, Phase

#: Longest text kept in ``fault``/``quality``/``reason`` columns (tracebacks go to tags).
MAX_MESSAGE = 4000


class JobNotFoundError(SurveydmError):
    """No job with the given id."""


class JobStateError(SurveydmError):
    """The operation does not apply to the job in its current status."""


class DuplicateJobError(SurveydmError):
    """A job with the same task type and key exists already (``job_id`` is its id).

    Keys make a submission idempotent: a caller that wants "the job for this data ID, new or
    old" catches this error and uses :attr:`job_id`.
    """

    def __init__(self, task: str, key: str, job_id: int) -> None:
        super().__init__(f"a {task!r} job with key {key!r} exists already: job {job_id}")
        self.task = task
        self.key = key
        self.job_id = job_id


class LeaseLostError(Exception):
    """The job is no longer held under this claim (aborted, or lease expired and re-claimed)."""


def clip(text: str | None) -> str | None:
    """``text`` cut to :data:`MAX_MESSAGE` characters (``...`` marks a cut)."""
    if text is None:
        return None
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def job_key(**data_id: object) -> str:
    """The canonical key of a job from its data ID: ``name=value`` pairs sorted by name and
    joined by ``;`` (``job_key(obs_set="20261120_001", production=3)`` ->
    ``"obs_set=20261120_001;production=3"``). Keys are unique per task type.

    Raises:
        ValueError: no part given, or a value holds ``;`` (it would make keys ambiguous).
    """
    if not data_id:
        raise ValueError("job_key needs at least one data ID part")
    parts = []
    for name, value in sorted(data_id.items()):
        text = str(value)
        if ";" in text:
            raise ValueError(f"job_key: {name}={text!r} holds ';'")
        parts.append(f"{name}={text}")
    return ";".join(parts)


@dataclass
class SubJobSpec:
    """A sub-job waiting to be inserted when the step commits (internal)."""

    task: str
    name: str
    config: dict[str, Any]
    input: dict[str, Any]
    after: tuple[int, ...]
    max_attempts: int
    max_lost: int = 5
    key: str | None = None


@dataclass(frozen=True)
class SubJobInfo:
    """Outcome of one sub-job, as seen from the epilog."""

    id: int
    task: str
    name: str
    status: JobStatus
    input: dict[str, Any]
    output: dict[str, Any] | None
    fault: str | None
    quality: str | None
    reason: str | None

    @classmethod
    def from_row(cls, r: Any) -> SubJobInfo:
        """From a ``job`` row (Core row or ORM object)."""
        return cls(
            id=r.id,
            task=r.task,
            name=r.name,
            status=JobStatus(r.status),
            input=r.input or {},
            output=r.output,
            fault=r.fault,
            quality=r.quality,
            reason=r.reason,
        )


@dataclass
class QCRecord:
    """A quality-control check: measured in a step (``id`` None until it is stored) or read
    back from ``quality_control``."""

    check_name: str
    value: float | None
    min_value: float | None
    max_value: float | None
    warn_min: float | None
    warn_max: float | None
    units: str
    description: str
    reference: str | None
    plot_file: str | None
    result: QCResult
    time: datetime
    id: int | None = None
    job_id: int | None = None

    @classmethod
    def from_row(cls, r: Any) -> QCRecord:
        """From a ``quality_control`` row."""
        return cls(
            check_name=r.check_name,
            value=r.value,
            min_value=r.min_value,
            max_value=r.max_value,
            warn_min=r.warn_min,
            warn_max=r.warn_max,
            units=r.units or "",
            description=r.description or "",
            reference=r.reference,
            plot_file=r.plot_file,
            result=QCResult(r.result),
            time=r.time,
            id=r.id,
            job_id=r.job_id,
        )


def _json_value(value: Any) -> Any:
    """``value`` decoded when it is JSON text (an empty object without the decoder)."""
    if not isinstance(value, str):
        return value
    if value == "{}":
        return {}
    return json.loads(value)


@dataclass(frozen=True)
class Claim:
    """A job claimed by a worker: what executing it needs (internal to pilots/executors)."""

    id: int
    task: str
    name: str
    config: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any] | None
    production_id: int | None
    phase: str
    attempts: int
    max_attempts: int
    parent_id: int | None
    root_id: int | None
    token: str
    worker: str = ""
    host: str = ""
    pid: int | None = None
    claimed: datetime | None = None
    lost: int = 0

    @property
    def faults(self) -> int:
        """Claims of this phase that ended in a fault so far (this one not counted)."""
        return self.attempts - 1 - self.lost

    @classmethod
    def from_row(
        cls, r: Any, *, token: str, worker: str, host: str, pid: int, claimed: datetime
    ) -> Claim:
        """From the row a claim ``UPDATE ... RETURNING`` gave (JSON columns as decoded values
        or as JSON text)."""
        # Built without the frozen dataclass's __init__ (one object.__setattr__ per field): a
        # pilot builds one per claimed job, and this is its hot path.
        c = object.__new__(cls)
        c.__dict__.update(
            id=r.id,
            task=r.task,
            name=r.name,
            config=_json_value(r.config) or {},
            input=_json_value(r.input) or {},
            output=_json_value(r.output),
            production_id=r.production_id,
            phase=r.phase,
            attempts=r.attempts,
            max_attempts=r.max_attempts,
            parent_id=r.parent_id,
            root_id=r.root_id,
            token=token,
            worker=worker,
            host=host,
            pid=pid,
            claimed=claimed,
            lost=r.lost,
        )
        return c

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (to ship to a Dask worker)."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class JobRecord:
    """One ``job`` row (see :class:`surveydm.db.models.jobs.Job` for the columns)."""

    id: int
    task: str
    name: str
    key: str | None
    status: JobStatus
    phase: Phase
    parent_id: int | None
    root_id: int | None
    production_id: int | None
    config: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any] | None
    created: datetime
    queued: datetime | None
    started: datetime | None
    claimed: datetime | None
    ended: datetime | None
    attempts: int
    max_attempts: int
    lost: int
    max_lost: int
    worker: str | None
    host: str | None
    pid: int | None
    lease_expires: datetime | None
    fault: str | None
    quality: str | None
    reason: str | None
    valid: bool
    wall_time: float

    @classmethod
    def from_row(cls, r: Any) -> JobRecord:
        """From a ``job`` row (Core row or ORM object)."""
        return cls(
            id=r.id,
            task=r.task,
            name=r.name or "",
            key=r.key,
            status=JobStatus(r.status),
            phase=Phase(r.phase),
            parent_id=r.parent_id,
            root_id=r.root_id,
            production_id=r.production_id,
            config=r.config or {},
            input=r.input or {},
            output=r.output,
            created=r.created,
            queued=r.queued,
            started=r.started,
            claimed=r.claimed,
            ended=r.ended,
            attempts=r.attempts,
            max_attempts=r.max_attempts,
            lost=r.lost,
            max_lost=r.max_lost,
            worker=r.worker,
            host=r.host,
            pid=r.pid,
            lease_expires=r.lease_expires,
            fault=r.fault,
            quality=r.quality,
            reason=r.reason,
            valid=bool(r.valid),
            wall_time=float(r.wall_time or 0.0),
        )

    @property
    def duration(self) -> float | None:
        """Seconds from the first start to the end (or now while unfinished), None if never
        started."""
        if self.started is None:
            return None
        return ((self.ended or datetime.now(UTC)) - self.started).total_seconds()


@dataclass(frozen=True)
class AttemptRecord:
    """One claim of a job and how it ended (a ``job_attempt`` row). The attempt under way, if
    any, is not a row yet: :func:`~surveydm.orchestration.reads.job_detail` shows it from the
    job's claim with ``outcome`` None."""

    job_id: int
    attempt: int
    phase: Phase
    worker: str | None
    host: str | None
    pid: int | None
    started: datetime | None
    ended: datetime | None
    outcome: AttemptOutcome | None
    fault: str | None
    wall_time: float | None
    id: int | None = None

    @classmethod
    def from_row(cls, r: Any) -> AttemptRecord:
        """From a ``job_attempt`` row."""
        return cls(
            job_id=r.job_id,
            attempt=r.attempt,
            phase=Phase(r.phase),
            worker=r.worker,
            host=r.host,
            pid=r.pid,
            started=r.started,
            ended=r.ended,
            outcome=AttemptOutcome(r.outcome),
            fault=r.fault,
            wall_time=r.wall_time,
            id=r.id,
        )


@dataclass(frozen=True)
class TagRecord:
    """A log, traceback or other name/value tag of a job."""

    name: str
    value: str
    attempt: int | None
    time: datetime

    @classmethod
    def from_row(cls, r: Any) -> TagRecord:
        """From a ``tag`` row."""
        return cls(name=r.name, value=r.value or "", attempt=r.attempt, time=r.time)


@dataclass(frozen=True)
class Summary:
    """Derived status of a job and its sub-job tree (by aggregate query, never stored).

    Attributes:
        job_id, task, name: the job.
        status: the job's own status.
        state: overall state: the own status once final; ``running`` while it or any sub-job
            is under way; else the own status (``queued``/``pending``).
        counts: number of sub-jobs (whole tree, the job itself excluded) per status; every
            :class:`JobStatus` is a key.
        total: number of sub-jobs in the tree.
        done_fraction: done / total (the job's own done-ness when it has no sub-jobs).
        finished_fraction: sub-jobs in a final status / total.
        result: the worst of the tree's QC checks and of what its statuses say
            (:attr:`JobStatus.result`: a failed or quality-failed job fails, a partial,
            skipped or aborted one warns).
        qc: the display colour of ``result``: ``green``, ``yellow`` or ``red``.
        qc_counts: QC rows per result (``pass``, ``warn``, ``fail``) in the tree.
    """

    job_id: int
    task: str
    name: str
    status: JobStatus
    state: JobStatus
    counts: dict[str, int]
    total: int
    done_fraction: float
    finished_fraction: float
    result: QCResult
    qc_counts: dict[str, int] = field(default_factory=dict)

    @property
    def qc(self) -> str:
        """Display colour of the tree: ``green``, ``yellow`` or ``red``."""
        return self.result.colour

    @property
    def failed(self) -> int:
        """Sub-jobs that ended failed or failed_quality."""
        return self.counts[JobStatus.FAILED] + self.counts[JobStatus.FAILED_QUALITY]


@dataclass(frozen=True)
class TreeRow:
    """A job with the counts of the jobs below it and the derived QC result (list rows)."""

    job: JobRecord
    counts: dict[str, int]
    result: QCResult

    @property
    def total(self) -> int:
        """Jobs counted below this one."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class JobDetail:
    """Everything about one job, as ``surveydm jobs show`` and the portal's job page show it.

    Attributes:
        job: the job row.
        summary: its derived tree summary.
        depends_on: ids of the jobs it runs after.
        ancestors: ids from the root down to its parent.
        attempts: every claim of the job, oldest first (the one under way last, outcome None).
        tags: logs, tracebacks and other tags, oldest first.
        qc: its own QC checks.
        children_by_status: direct sub-jobs per status.
        children: the first direct sub-jobs (failed ones first), with their own counts.
        n_children: number of direct sub-jobs.
        failed_in_tree: failed, quality-failed or aborted jobs anywhere below it (first ones).
    """

    job: JobRecord
    summary: Summary
    depends_on: list[int]
    ancestors: list[int]
    attempts: list[AttemptRecord]
    tags: list[TagRecord]
    qc: list[QCRecord]
    children_by_status: dict[str, int]
    children: list[TreeRow]
    n_children: int
    failed_in_tree: list[TreeRow]


@dataclass(frozen=True)
class JobQuery:
    """Filters of a job listing (all optional; combined with AND).

    ``parent``: only its direct sub-jobs; ``roots``: only top-level jobs; ``qc``: only jobs
    whose derived colour is this one (over the whole tree for top-level jobs, over the job's own
    checks and status otherwise).
    """

    statuses: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    parent: int | None = None
    roots: bool = False
    qc: QCResult | None = None


@dataclass(frozen=True)
class TaskStats:
    """Accounting of one task type over all past and present jobs.

    ``wall_time_total`` and ``wall_time_mean`` are seconds of execution (all attempts and
    phases); the mean is over jobs that executed at least once. ``lost`` counts attempts whose
    worker was lost.
    """

    task: str
    count: int
    done: int
    done_partial: int
    failed: int
    failed_quality: int
    skipped: int
    aborted: int
    active: int
    faults: int
    lost: int
    wall_time_total: float
    wall_time_mean: float | None


@dataclass
class SweepResult:
    """What one sweep changed."""

    requeued_lost: int = 0
    failed_lost: int = 0
    promoted: int = 0
    skipped: int = 0
    woken: int = 0

    @property
    def changed(self) -> int:
        """Total rows changed."""
        return self.requeued_lost + self.failed_lost + self.promoted + self.skipped + self.woken
