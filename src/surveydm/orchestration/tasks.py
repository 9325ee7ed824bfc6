"""Declaring task types: :class:`Task`, :func:`register_task`, and the :class:`JobContext` a
task's prolog, run and epilog receive.

A task type is a class with a ``name`` and up to three steps (seed 000 section 6.2,
BrownThrower): ``prolog`` (may create sub-jobs with dependencies), ``run`` (the work; returns
the job output) and ``epilog`` (runs after every sub-job ended; may inspect their outcome and add
more sub-jobs). Everything a step records through the context (sub-jobs, QC rows, tags, logs,
``on_commit`` callbacks) is written in the single transaction that ends the step, so a worker that
dies mid-job leaves nothing behind and the re-run starts clean.

Raising :class:`QualityFailure` says the data is bad: the job ends ``failed_quality``, is not
retried, and its dependants are skipped. Any other exception is a *fault*: its traceback is
stored as a tag and the job is retried with exponential back-off up to ``max_attempts``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from surveydm.db.base import utcnow
from surveydm.errors import SurveydmError
from surveydm.orchestration.qc import QCLimit, QCResult
from surveydm.orchestration.reads import subjob_infos
from surveydm.orchestration.records import QCRecord, SubJobInfo, SubJobSpec
from surveydm.orchestration.status import Phase

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from surveydm.db import Registry

log = logging.getLogger("surveydm.jobs")


class QualityFailure(Exception):  # noqa: N818 (the name states what it is, not an error class)
    """Raised by a task when its data is bad: the job ends ``failed_quality``, is never retried,
    and every job depending on it is skipped with the message as the reason."""


class UnknownTaskError(SurveydmError):
    """A task type name that no loaded module registered."""


class TaskDefinitionError(SurveydmError):
    """A Task subclass is declared wrongly (no name, a name taken, bad limits)."""


class Task:
    """Base class of task types. Subclass it, set ``name`` and override the steps you need.

    Attributes:
        name: the task type stored in ``job.task`` (unique, at most 64 characters).
        max_attempts: claims allowed before a fault is final (1 = never retried); claims
            whose worker was lost do not count.
        max_lost: lost workers (lease expired: SIGKILL, lost host) allowed before the job
            fails: a lost worker is the system's fault, so it has its own bound, but a job that
            keeps killing its workers is stopped.
        retry_backoff: seconds before the first retry; doubled on each further fault
            (exponential back-off: ``retry_backoff * 2**(attempt - 1)``), capped at
            ``retry_backoff_max``.
        retry_backoff_max: upper bound of the back-off, seconds.
        description: one line shown by ``surveydm jobs`` listings.
    """

    name: str = ""
    max_attempts: int = 3
    max_lost: int = 5
    retry_backoff: float = 10.0
    retry_backoff_max: float = 600.0
    description: str = ""

    def prolog(self, ctx: JobContext) -> None:
        """Prepare the job; may create sub-jobs with ``ctx.add_subjob``. Default: nothing."""

    def run(self, ctx: JobContext) -> dict[str, Any] | None:
        """Do the work; the returned JSON-able dict becomes ``job.output``. Default: nothing."""
        return None

    def epilog(self, ctx: JobContext) -> None:
        """Conclude after all sub-jobs ended (``ctx.subjobs()``); may add more sub-jobs."""

    @classmethod
    def backoff_seconds(cls, attempt: int) -> float:
        """Delay before the retry that follows fault number ``attempt`` (1-based), seconds."""
        return min(cls.retry_backoff * math.pow(2.0, max(attempt - 1, 0)), cls.retry_backoff_max)


#: Registered task types by name.
TASKS: dict[str, type[Task]] = {}

T = TypeVar("T", bound=type[Task])


def register_task(cls: T) -> T:
    """Class decorator registering a :class:`Task` subclass under ``cls.name``.

    Re-registering the same class (module re-import) is allowed; a different class with a name
    already taken raises :class:`TaskDefinitionError`.
    """
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskDefinitionError(f"{cls!r} is not a Task subclass")
    name = cls.name
    if not name or not isinstance(name, str) or len(name) > 64:
        raise TaskDefinitionError(f"{cls.__qualname__}: set `name` (1 to 64 characters)")
    if int(cls.max_attempts) < 1 or int(cls.max_lost) < 1:
        raise TaskDefinitionError(f"task {name!r}: max_attempts and max_lost must be >= 1")
    old = TASKS.get(name)
    if old is not None and old is not cls and not _same_definition(old, cls):
        raise TaskDefinitionError(
            f"task name {name!r} is taken by {old.__module__}.{old.__qualname__}"
        )
    TASKS[name] = cls
    return cls


def _same_definition(a: type[Task], b: type[Task]) -> bool:
    """Same class defined twice: module re-imported, or a script imported under its module
    name as well as ``__main__`` (same qualified name in the same source file)."""
    if a.__qualname__ != b.__qualname__:
        return False
    if a.__module__ == b.__module__:
        return True
    try:
        return inspect.getsourcefile(a) == inspect.getsourcefile(b)
    except TypeError:
        return False


def get_task(name: str) -> type[Task]:
    """The registered task class called ``name``.

    Raises:
        UnknownTaskError: no loaded module registered it (lists the known names).
    """
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS)) or "none loaded"
        raise UnknownTaskError(f"unknown task type {name!r} (known: {known})") from None


def load_task_modules(modules: Iterable[str]) -> list[str]:
    """Import the modules that declare task types (e.g. ``["surveydm.pipelines.nightly"]``).

    Orchestration never imports pipelines itself: workers and the CLI call this with the
    configured list. Returns the modules imported.

    Raises:
        UnknownTaskError: a module cannot be imported (names it and the reason).
    """
    done = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UnknownTaskError(f"cannot import task module {module!r}: {exc}") from exc
        done.append(module)
    return done


def task_modules() -> list[str]:
    """Modules of every registered task type (what a spawned process must import)."""
    return sorted({cls.__module__ for cls in TASKS.values()})


@dataclass(frozen=True)
class SubJobRef:
    """Handle on a sub-job created in this step, usable in ``after=`` of later sub-jobs.

    ``index`` is its position among the sub-jobs created by this step; the database id is known
    only once the step commits.
    """

    index: int
    task: str
    name: str


def qc_result(
    value: float | None,
    *,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    warn_min: float | None = None,
    warn_max: float | None = None,
) -> QCResult:
    """Classify a QC measurement: :attr:`QCResult.FAIL` outside [min, max],
    :attr:`QCResult.WARN` outside [warn_min, warn_max], else :attr:`QCResult.PASS`. A missing or
    NaN value fails when any limit is set (:meth:`QCLimit.judge`)."""
    return QCLimit(min, max, warn_min, warn_max).judge(value)


class CancelFlag:
    """The flag a step reads to learn that its job was aborted or its lease lost: the part of
    :class:`threading.Event` a step uses (``set``, ``is_set``), a tenth of its cost to create
    (a pilot makes one per claimed job). Setting or reading a bool is atomic across threads."""

    __slots__ = ("_flag",)

    def __init__(self) -> None:
        self._flag = False

    def set(self) -> None:
        """Raise the flag (the heartbeat does, from its own thread)."""
        self._flag = True

    def is_set(self) -> bool:
        """True once the flag was raised."""
        return self._flag


@dataclass
class JobContext:
    """What a task step sees of its job, and how it records results.

    Attributes:
        job_id: the job's id.
        task: its task type.
        name: its name.
        config: its configuration (JSON dict).
        input: its input (JSON dict).
        production_id: the production it works for, or None.
        registry: a :class:`surveydm.db.Registry` for the task's own reads and writes.
        phase: ``"prolog"`` (prolog + run [+ epilog]) or ``"epilog"`` (after sub-jobs).
        attempt: 1 for the first claim of this phase, 2 for the first retry, ...
        output: the job output so far (``run``'s return value; the epilog may update it).
        worker: name of the pilot executing it.
    """

    job_id: int
    task: str
    name: str
    config: dict[str, Any]
    input: dict[str, Any]
    production_id: int | None
    registry: Registry
    phase: str = Phase.PROLOG
    attempt: int = 1
    output: dict[str, Any] | None = None
    worker: str = ""
    _subjobs: list[SubJobSpec] = field(default_factory=list, repr=False)
    _qc: list[QCRecord] = field(default_factory=list, repr=False)
    _tags: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _log: list[str] = field(default_factory=list, repr=False)
    _on_commit: list[Callable[[Session], None]] = field(default_factory=list, repr=False)
    _cancel: CancelFlag | threading.Event = field(default_factory=CancelFlag, repr=False)

    # -- sub-jobs ---------------------------------------------------------------------------
    def add_subjob(
        self,
        task: str,
        *,
        name: str = "",
        config: dict[str, Any] | None = None,
        input: dict[str, Any] | None = None,  # noqa: A002
        after: Sequence[SubJobRef] = (),
        max_attempts: int | None = None,
        key: str | None = None,
    ) -> SubJobRef:
        """Create a sub-job of this job, run after the sub-jobs in ``after`` ended ``done``.

        The sub-job is inserted when this step commits (atomically with it). The epilog of this
        job runs once every sub-job ended. ``max_attempts`` defaults to the task type's.
        ``key`` (optional, unique per task type: see
        :func:`~surveydm.orchestration.records.job_key`) makes a second sub-job for the same
        work a fault of this step instead of a duplicate.

        Raises:
            UnknownTaskError: ``task`` is not a registered task type.
            ValueError: an ``after`` reference was not created by this step.
        """
        cls = get_task(task)
        idx = len(self._subjobs)
        deps = []
        for ref in after:
            if (
                not isinstance(ref, SubJobRef)
                or ref.index >= idx
                or self._subjobs[ref.index].name != ref.name
            ):
                raise ValueError(f"`after` entry {ref!r} is not a sub-job created by this step")
            deps.append(ref.index)
        self._subjobs.append(
            SubJobSpec(
                task=task,
                name=name or f"{task}#{idx}",
                config=dict(config or {}),
                input=dict(input or {}),
                after=tuple(sorted(set(deps))),
                max_attempts=int(max_attempts or cls.max_attempts),
                max_lost=int(cls.max_lost),
                key=key,
            )
        )
        return SubJobRef(idx, task, self._subjobs[idx].name)

    def subjobs(self) -> list[SubJobInfo]:
        """Every sub-job of this job created so far (by earlier steps), ordered by id."""
        with self.registry.session(write=False) as s:
            return subjob_infos(s, self.job_id)

    # -- records ----------------------------------------------------------------------------
    def qc(
        self,
        check: str,
        value: float | None,
        *,
        min: float | None = None,  # noqa: A002
        max: float | None = None,  # noqa: A002
        warn_min: float | None = None,
        warn_max: float | None = None,
        units: str = "",
        description: str = "",
        reference: str | None = None,
        plot_file: str | None = None,
    ) -> QCResult:
        """Record a quality-control check; returns ``"pass"``, ``"warn"`` or ``"fail"``
        (see :func:`qc_result`). The row is written when the step ends, also when it ends in a
        :class:`QualityFailure` (so the failing check is on record)."""
        v = None if value is None else float(value)
        result = qc_result(v, min=min, max=max, warn_min=warn_min, warn_max=warn_max)
        self._qc.append(
            QCRecord(
                check_name=check,
                value=None if v is None or math.isnan(v) else v,
                min_value=min,
                max_value=max,
                warn_min=warn_min,
                warn_max=warn_max,
                units=units,
                description=description,
                reference=None if reference is None else str(reference),
                plot_file=None if plot_file is None else str(plot_file),
                result=result,
                time=utcnow(),
            )
        )
        return result

    def log(self, message: str) -> None:
        """Append a line to the job's log (stored as the ``log`` tag of this attempt)."""
        log.info("job %s (%s): %s", self.job_id, self.task, message)
        self._log.append(str(message))

    def tag(self, name: str, value: object) -> None:
        """Attach a name/value tag to the job (stored when the step ends)."""
        self._tags.append((str(name)[:64], str(value)))

    def on_commit(self, fn: Callable[[Session], None]) -> None:
        """Call ``fn(session)`` inside the transaction that marks this step done.

        Register products here: they then appear atomically with the job's completion, and a
        worker that dies before leaves nothing registered (the re-run starts clean). Not called
        when the step fails.
        """
        self._on_commit.append(fn)

    @property
    def cancelled(self) -> bool:
        """True once the job was aborted or its lease was lost; long steps may stop early."""
        return self._cancel.is_set()
