"""UWS 1.1 asynchronous TAP jobs, kept as files so they survive a service restart.

Each job is a folder ``<jobs_dir>/<job id>/`` with ``job.json`` (phase, times, parameters,
error) written atomically, and its result file. A job runs in its own worker process (seed
001: "executing concurrently is mandatory ... Python multiprocessing"), so a long query never
blocks the web service; a watcher thread stops the process at the job's execution duration
(ERROR) or on ABORT. Jobs QUEUED or EXECUTING when the service stopped are marked ERROR at the
next start ("interrupted by a service restart"); jobs past their destruction time are deleted.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import shutil
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from surveydm.errors import SurveydmError

PHASES = (
    "PENDING",
    "QUEUED",
    "EXECUTING",
    "COMPLETED",
    "ERROR",
    "ABORTED",
    "UNKNOWN",
    "HELD",
    "SUSPENDED",
    "ARCHIVED",
)
FINAL = ("COMPLETED", "ERROR", "ABORTED", "ARCHIVED")
UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"


class UwsError(SurveydmError):
    """A UWS request that cannot be done (unknown job, bad phase change); ``http_status``."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Job:
    """One asynchronous job (UWS 1.1 section 2.2)."""

    job_id: str
    phase: str
    parameters: dict[str, str]
    creation_time: str
    execution_duration: int
    destruction: str
    run_id: str | None = None
    owner_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    error: str | None = None
    result_mime: str | None = None
    result_rows: int | None = None
    overflow: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: the owner's row filters at creation (publish/vo/tap/access.py), applied when it runs
    filters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Job:
        """The job stored in ``path`` (``job.json``)."""
        return cls(**json.loads(path.read_text()))

    def xml(self, base_url: str) -> str:
        """The UWS 1.1 job document."""

        def opt(tag: str, value: str | None) -> str:
            if value is None:
                return f'<uws:{tag} xsi:nil="true"/>'
            return f"<uws:{tag}>{escape(value)}</uws:{tag}>"

        params = "".join(
            f'<uws:parameter id="{escape(k.lower())}">{escape(v)}</uws:parameter>'
            for k, v in self.parameters.items()
        )
        results = ""
        if self.phase == "COMPLETED":
            results = (
                f'<uws:result id="result" xlink:type="simple" '
                f'xlink:href="{escape(base_url)}/async/{self.job_id}/results/result"/>'
            )
        error = ""
        if self.phase == "ERROR" and self.error:
            error = (
                '<uws:errorSummary type="fatal" hasDetail="true">'
                f"<uws:message>{escape(self.error)}</uws:message></uws:errorSummary>"
            )
        run_id = f"<uws:runId>{escape(self.run_id)}</uws:runId>" if self.run_id else ""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<uws:job xmlns:uws="{UWS_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.1">'
            f"<uws:jobId>{self.job_id}</uws:jobId>{run_id}"
            f"{opt('ownerId', self.owner_id)}<uws:phase>{self.phase}</uws:phase>"
            f"{opt('quote', None)}<uws:creationTime>{self.creation_time}</uws:creationTime>"
            f"{opt('startTime', self.start_time)}{opt('endTime', self.end_time)}"
            f"<uws:executionDuration>{self.execution_duration}</uws:executionDuration>"
            f"<uws:destruction>{self.destruction}</uws:destruction>"
            f"<uws:parameters>{params}</uws:parameters>"
            f"<uws:results>{results}</uws:results>{error}</uws:job>\n"
        )


def _iso_now(delta: timedelta = timedelta(0)) -> str:
    return (_now() + delta).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _run_job(job_dir: str, registry_url: str, reader_url: str | None, time_limit_s: float) -> None:
    """Worker process body: run the job's query and write its result and final phase."""
    from surveydm.publish.sqlbrowser import SqlBrowser
    from surveydm.publish.vo.tap.service import TapService

    folder = Path(job_dir)
    job = Job.load(folder / "job.json")
    service = TapService(SqlBrowser(registry_url, reader_url=reader_url, time_limit_s=time_limit_s))
    try:
        files = {name: (folder / key).read_bytes() for key, name in job.extra.items()}
        q = service.prepare(job.parameters, files, job.filters)
        tmp = folder / "result.part"
        with tmp.open("wb") as fh:
            for piece in service.stream(q, time_limit_s):
                fh.write(piece)
        tmp.replace(folder / "result")
        job.result_mime = q.fmt.mime
        job.phase = "COMPLETED"
    except Exception as exc:  # noqa: BLE001  (the job records why it failed)
        job.phase, job.error = "ERROR", str(exc) or type(exc).__name__
    job.end_time = _iso_now()
    JobStore.save_job(folder, job)


_PRELOAD = ["surveydm.publish.vo.tap.service", "surveydm.db.models", "psycopg"]


def _context() -> multiprocessing.context.BaseContext:
    """Worker processes fork from a single-threaded fork server that imported the query code
    once (fast to start, safe beside the web server's threads); spawn where there is none."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


class JobStore:
    """The asynchronous jobs of one TAP service, under ``jobs_dir``."""

    def __init__(
        self,
        jobs_dir: Path,
        registry_url: str,
        *,
        reader_url: str | None = None,
        default_duration_s: float = 3600.0,
        hard_duration_s: float = 14400.0,
        destruction_days: float = 7.0,
        max_running: int = 2,
    ) -> None:
        self.dir = Path(jobs_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.registry_url = registry_url
        self.reader_url = reader_url
        self.default_duration_s = default_duration_s
        self.hard_duration_s = hard_duration_s
        self.destruction_days = destruction_days
        self.max_running = max_running
        self._lock = threading.RLock()
        self._procs: dict[str, multiprocessing.process.BaseProcess] = {}
        self._queue: list[str] = []
        self._recover()

    # -- storage ------------------------------------------------------------------------
    @staticmethod
    def save_job(folder: Path, job: Job) -> None:
        """Write ``job.json`` atomically."""
        tmp = folder / f"job.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(job)))
        tmp.replace(folder / "job.json")

    def _folder(self, job_id: str) -> Path:
        if not job_id.isalnum():
            raise UwsError(f"no job {job_id!r}", 404)
        return self.dir / job_id

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            UwsError: no such job (404).
        """
        path = self._folder(job_id) / "job.json"
        if not path.is_file():
            raise UwsError(f"no job {job_id!r}", 404)
        return Job.load(path)

    def save(self, job: Job) -> None:
        """Store ``job``."""
        self.save_job(self._folder(job.job_id), job)

    def list(self, phases: list[str] | None = None, last: int | None = None) -> list[Job]:
        """Jobs (newest first), optionally only those in ``phases``, at most ``last``."""
        self.sweep()
        jobs = []
        for path in self.dir.glob("*/job.json"):
            try:
                jobs.append(Job.load(path))
            except (OSError, ValueError, TypeError):
                continue
        if phases:
            jobs = [j for j in jobs if j.phase in phases]
        jobs.sort(key=lambda j: j.creation_time, reverse=True)
        return jobs[:last] if last is not None else jobs

    def _recover(self) -> None:
        for path in self.dir.glob("*/job.json"):
            try:
                job = Job.load(path)
            except (OSError, ValueError, TypeError):
                continue
            if job.phase in ("QUEUED", "EXECUTING"):
                job.phase, job.error = "ERROR", "interrupted by a service restart"
                job.end_time = _iso_now()
                self.save_job(path.parent, job)

    def sweep(self) -> None:
        """Delete jobs past their destruction time (stopping them first)."""
        now = _now()
        for path in self.dir.glob("*/job.json"):
            try:
                job = Job.load(path)
            except (OSError, ValueError, TypeError):
                continue
            if _parse_iso(job.destruction) <= now:
                self.delete(job.job_id)

    # -- life cycle ---------------------------------------------------------------------
    def create(
        self,
        parameters: dict[str, str],
        owner: str | None = None,
        files: dict[str, bytes] | None = None,
        filters: dict[str, str] | None = None,
    ) -> Job:
        """A new PENDING job of ``owner`` (None: anonymous) with ``parameters``, posted
        ``files`` (UPLOAD tables, kept in the job folder) and the owner's row ``filters``;
        PHASE=RUN in the parameters starts it."""
        job_id = secrets.token_hex(8)
        params = {k: v for k, v in parameters.items() if k.upper() not in ("PHASE", "RUNID")}
        run_id = next((v for k, v in parameters.items() if k.upper() == "RUNID"), None)
        job = Job(
            job_id=job_id,
            phase="PENDING",
            parameters=params,
            creation_time=_iso_now(),
            execution_duration=int(self.default_duration_s),
            destruction=_iso_now(timedelta(days=self.destruction_days)),
            run_id=run_id,
            owner_id=owner,
            filters=dict(filters or {}),
        )
        self._folder(job_id).mkdir()
        for i, (name, data) in enumerate((files or {}).items()):
            (self._folder(job_id) / f"upload-{i}").write_bytes(data)
            job.extra[f"upload-{i}"] = name
        self.save(job)
        if any(k.upper() == "PHASE" and v.upper() == "RUN" for k, v in parameters.items()):
            self.run(job_id)
        return self.get(job_id)

    def run(self, job_id: str) -> None:
        """PHASE=RUN: queue the job (it starts when fewer than ``max_running`` run).

        Raises:
            UwsError: the job is not PENDING (or HELD).
        """
        with self._lock:
            job = self.get(job_id)
            if job.phase in ("QUEUED", "EXECUTING"):
                return
            if job.phase not in ("PENDING", "HELD"):
                raise UwsError(f"job {job_id} is {job.phase}: it cannot be run again", 409)
            job.phase = "QUEUED"
            self.save(job)
            self._queue.append(job_id)
            self._start_queued()

    def _start_queued(self) -> None:
        with self._lock:
            while self._queue and len(self._procs) < self.max_running:
                job_id = self._queue.pop(0)
                job = self.get(job_id)
                if job.phase != "QUEUED":
                    continue
                job.phase, job.start_time = "EXECUTING", _iso_now()
                self.save(job)
                ctx = _context()
                proc = ctx.Process(
                    target=_run_job,
                    args=(
                        str(self._folder(job_id)),
                        self.registry_url,
                        self.reader_url,
                        float(job.execution_duration),
                    ),
                    daemon=True,
                )
                proc.start()
                self._procs[job_id] = proc
                threading.Thread(
                    target=self._watch, args=(job_id, proc, job.execution_duration), daemon=True
                ).start()

    def _watch(self, job_id: str, proc: Any, duration: int) -> None:
        proc.join(duration + 5 if duration > 0 else None)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
            with self._lock:
                job = self.get(job_id)
                if job.phase == "EXECUTING":
                    job.phase = "ERROR"
                    job.error = f"execution duration of {duration} s exceeded"
                    job.end_time = _iso_now()
                    self.save(job)
        with self._lock:
            self._procs.pop(job_id, None)
            try:
                job = self.get(job_id)
                if job.phase == "EXECUTING":  # the worker died without a word
                    job.phase, job.error = "ERROR", f"worker process exited ({proc.exitcode})"
                    job.end_time = _iso_now()
                    self.save(job)
            except UwsError:
                pass
            self._start_queued()

    def abort(self, job_id: str) -> None:
        """PHASE=ABORT: stop a queued or executing job (ABORTED)."""
        with self._lock:
            job = self.get(job_id)
            if job.phase in FINAL:
                return
            proc = self._procs.get(job_id)
            job.phase, job.end_time = "ABORTED", _iso_now()
            self.save(job)
            if job_id in self._queue:
                self._queue.remove(job_id)
        if proc is not None:
            proc.terminate()

    def delete(self, job_id: str) -> None:
        """Stop (if running) and remove the job."""
        folder = self._folder(job_id)
        if not folder.is_dir():
            raise UwsError(f"no job {job_id!r}", 404)
        with self._lock:
            proc = self._procs.pop(job_id, None)
            if proc is not None:
                proc.terminate()
            shutil.rmtree(folder, ignore_errors=True)

    def set_duration(self, job_id: str, seconds: str) -> None:
        """EXECUTIONDURATION (s, 0 = the hard limit), only while PENDING."""
        job = self._pending(job_id)
        try:
            n = int(float(seconds))
        except ValueError:
            raise UwsError(
                f"EXECUTIONDURATION must be a number of seconds, not {seconds!r}"
            ) from None
        if n <= 0 or n > self.hard_duration_s:
            n = int(self.hard_duration_s)
        job.execution_duration = n
        self.save(job)

    def set_destruction(self, job_id: str, when: str) -> None:
        """DESTRUCTION (ISO 8601), no later than the retention period allows."""
        job = self.get(job_id)
        try:
            t = _parse_iso(when)
        except ValueError:
            raise UwsError(f"DESTRUCTION must be an ISO 8601 time, not {when!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        latest = _parse_iso(job.creation_time) + timedelta(days=self.destruction_days)
        job.destruction = (
            min(t, latest).astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        )
        self.save(job)

    def update_parameters(self, job_id: str, params: dict[str, str]) -> None:
        """New parameter values, only while PENDING."""
        job = self.get(job_id)
        run_id = next((v for k, v in params.items() if k.upper() == "RUNID"), None)
        rest = {k: v for k, v in params.items() if k.upper() not in ("PHASE", "RUNID")}
        if rest:
            job = self._pending(job_id)
            job.parameters.update(rest)
        if run_id is not None:
            job.run_id = run_id
        self.save(job)

    def _pending(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.phase != "PENDING":
            raise UwsError(f"job {job_id} is {job.phase}: only a PENDING job can change", 409)
        return job

    def result_path(self, job_id: str) -> Path:
        """The result file of a COMPLETED job.

        Raises:
            UwsError: not completed (or no such job), 404.
        """
        job = self.get(job_id)
        path = self._folder(job_id) / "result"
        if job.phase != "COMPLETED" or not path.is_file():
            raise UwsError(f"job {job_id} has no result (phase {job.phase})", 404)
        return path

    def jobs_xml(self, jobs: list[Job], base_url: str) -> str:
        """The UWS 1.1 job list document."""
        refs = "".join(
            f'<uws:jobref id="{j.job_id}" xlink:href="{escape(base_url)}/async/{j.job_id}">'
            f"<uws:phase>{j.phase}</uws:phase>"
            + (f"<uws:runId>{escape(j.run_id)}</uws:runId>" if j.run_id else "")
            + f"<uws:creationTime>{j.creation_time}</uws:creationTime></uws:jobref>"
            for j in jobs
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<uws:jobs xmlns:uws="{UWS_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'version="1.1">{refs}</uws:jobs>\n'
        )

    def close(self) -> None:
        """Stop every running worker process (their jobs are marked ERROR)."""
        with self._lock:
            for proc in list(self._procs.values()):
                proc.terminate()
                proc.join(5)
