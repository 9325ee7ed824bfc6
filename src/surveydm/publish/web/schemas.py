"""Pydantic response models of the portal's JSON API (each HTML page has a JSON twin with the
same content; the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

QcFlag = Literal["green", "yellow", "red"]


class Health(BaseModel):
    """Liveness of the portal and its registry connection."""

    status: Literal["ok"] = "ok"
    database: str = Field(description="registry engine: sqlite or postgresql")


class JobRow(BaseModel):
    """One line of the operations table (seed 000 section 7.1, figure 8)."""

    id: int
    name: str
    task: str
    status: str
    n_subjobs: int = Field(description="jobs below this one in its tree")
    subjobs_by_status: dict[str, int] = Field(description="sub-jobs (whole tree) per status")
    qc_flag: QcFlag = Field(
        description="as the job system derives it over the job's tree (a sub-job listed "
        "under its parent: its own checks and status): red = a failed check, a failed or "
        "quality-failed job; yellow = a warning, a partial, skipped or aborted job; "
        "green = neither"
    )
    created: datetime
    started: datetime | None
    ended: datetime | None
    duration_s: float | None = Field(description="ended (or now) minus started, seconds")


class JobFilters(BaseModel):
    """Filters of the job list as applied."""

    task: str | None = None
    status: str | None = None
    qc: QcFlag | None = None
    since: datetime | None = None
    until: datetime | None = None
    parent: int | None = Field(None, description="list the sub-jobs of this job")


class JobList(BaseModel):
    """A page of jobs with the totals the pie charts show."""

    jobs: list[JobRow]
    total: int = Field(description="jobs matching the filters")
    page: int
    page_size: int
    filters: JobFilters
    per_task: dict[str, int] = Field(description="matching jobs per task")
    per_status: dict[str, int] = Field(description="matching jobs per status")
    tasks: list[str] = Field(description="every task type with top-level jobs (filter choices)")


class QcRow(BaseModel):
    """One quality-control check of a job (seed 000 section 7.2)."""

    id: int
    check_name: str
    description: str
    value: float | None
    units: str
    min_value: float | None
    max_value: float | None
    warn_min: float | None
    warn_max: float | None
    result: str = Field(description="pass, warn or fail")
    qc_pass: bool
    reference: str | None
    plot_url: str | None = Field(description="URL of the diagnostic plot, if any")


class TagRow(BaseModel):
    """A log line, traceback or other name/value tag of a job."""

    name: str
    value: str
    attempt: int | None
    time: datetime


class AttemptRow(BaseModel):
    """One claim of a job and how it ended (the attempt under way: outcome null)."""

    attempt: int = Field(description="claim number within its phase")
    phase: str
    worker: str | None
    host: str | None
    pid: int | None
    started: datetime | None
    ended: datetime | None
    outcome: str | None = Field(
        description="ok, fault, quality, lost (worker lost: the system's fault), aborted, "
        "migrated (summary of attempts made before they were recorded), null while running"
    )
    fault: str | None
    wall_time_s: float | None


class JobDetail(BaseModel):
    """Everything about one job (seed 000 section 7.1: configuration, input, output, log,
    traceback, QC) and the way down its hierarchy."""

    job: JobRow
    parent_id: int | None
    root_id: int | None
    ancestors: list[int] = Field(description="ids from the root down to the parent")
    config: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any] | None
    fault: str | None
    quality: str | None
    reason: str | None
    key: str | None = Field(description="identity of the job's work, unique per task type")
    attempts: int = Field(description="claims of the current phase (faults + lost + 1)")
    max_attempts: int
    lost: int = Field(description="claims of the current phase whose worker was lost")
    max_lost: int
    attempt_history: list[AttemptRow] = Field(description="every attempt, oldest first")
    worker: str | None
    host: str | None
    wall_time_s: float
    logs: list[TagRow]
    tracebacks: list[TagRow]
    other_tags: list[TagRow]
    qc: list[QcRow]
    children_by_status: dict[str, int] = Field(description="direct sub-jobs per status")
    children: list[JobRow] = Field(description="first direct sub-jobs, failed ones first")
    failed_in_tree: list[JobRow] = Field(
        description="failed, quality-failed or aborted jobs anywhere below this one (first 50)"
    )
    n_children: int


class StatusPoint(BaseModel):
    """Jobs per status at one time."""

    time: datetime
    counts: dict[str, int]


class ObsSetStatus(BaseModel):
    """Time evolution of the statuses of the jobs processing one observation set (figure 9)."""

    obs_set: str
    n_jobs: int
    root_ids: list[int]
    series: list[StatusPoint]


class ArchiveEntry(BaseModel):
    """A folder or a file in the archive listing."""

    name: str
    path: str
    is_dir: bool
    n_files: int = 0
    size: int = Field(0, description="bytes (sum over the folder)")
    file_id: int | None = None
    adler32: str | None = None
    md5: str | None = None
    state: str | None = None
    download_url: str | None = None


class ArchiveListing(BaseModel):
    """Contents of one archive folder (raw/<night>/<obs_set>/, red/<release>/<obs_set>/)."""

    prefix: str
    parent: str | None
    entries: list[ArchiveEntry]


class ArchiveFileInfo(BaseModel):
    """One registered archive file."""

    id: int
    path: str
    size: int
    adler32: str
    md5: str | None = Field(description="None until the file is first read in full")
    state: str
    created: datetime
    verified: datetime | None
    download_url: str


class ProductionRow(BaseModel):
    """One production (seed 000 section 7.4 and table .1)."""

    id: int
    pipeline: str
    release: str
    software_version: str
    config: dict[str, Any]
    config_hash: str
    input_production_id: int | None
    job_id: int | None
    comments: str | None
    created: datetime


class ColumnInfo(BaseModel):
    """One column of a registry table."""

    name: str
    type: str
    nullable: bool
    primary_key: bool
    description: str | None
    foreign_key: str | None = None


class IndexInfo(BaseModel):
    """One index of a registry table."""

    name: str | None
    columns: list[str]
    unique: bool


class TableInfo(BaseModel):
    """One table of the registry with its columns and indexes."""

    name: str
    description: str | None
    columns: list[ColumnInfo]
    indexes: list[IndexInfo]


class SchemaInfo(BaseModel):
    """The registry schema (seed 000 section 7.4)."""

    engine: str
    tables: list[TableInfo]


class SqlRequest(BaseModel):
    """A query for the read-only SQL browser."""

    query: str = Field(description="one SELECT (or WITH ... SELECT, VALUES) statement")
    limit: int = Field(1000, ge=1, le=10_000, description="row limit (at most 10,000)")


class SqlResult(BaseModel):
    """Rows returned by the SQL browser."""

    columns: list[str]
    rows: list[list[Any]]
    n_rows: int
    truncated: bool = Field(description="the query had more rows than the limit")
    limit: int
    elapsed_s: float
    engine: str


class ReportCuts(BaseModel):
    """Quality cuts of the nightly report as applied."""

    min_transparency: float | None
    max_seeing: float | None
    max_psf_fwhm: float | None
    max_astro_rms: float | None
    max_zp_err: float | None
    min_zp: float | None


class ExposureRow(BaseModel):
    """One science exposure of the nightly report (read from a
    :class:`surveydm.publish.report.ExposureQuality`)."""

    model_config = ConfigDict(from_attributes=True)

    mosaic_id: int
    obs_set: str
    night: str
    filename: str
    exp_num: int | None
    date_obs: datetime | None
    filter_tray: str | None
    object: str | None
    ra: float | None
    dec: float | None
    exptime: float | None
    airmass: float | None
    seeing: float | None
    sky_background: float | None
    transparency: float | None
    zp_nightly: float | None
    zp_err: float | None
    astro_rms: float | None
    qc_status: str | None = Field(
        description="worst QC result of the exposure: pass, warn or fail (orchestration.qc."
        "QCResult); null before its single-epoch QC ran"
    )
    passed: bool
    failed_cuts: list[str]


class NightlyReportModel(BaseModel):
    """The nightly report for a range of nights (seed 000 section 7.3)."""

    first_night: str
    last_night: str
    cuts: ReportCuts
    n_science: int
    n_pass: int
    pass_percent: float | None
    pass_percent_by_night: dict[str, float]
    failed_by_cut: dict[str, int]
    exposures: list[ExposureRow]
    plots: dict[str, str] = Field(description="plot name -> PNG URL")
    csv_url: str


class ExposureQuickLook(BaseModel):
    """Reduced products of one exposure available for quick-look images."""

    mosaic_id: int
    obs_set: str
    filename: str
    kind: str
    ccds: list[int]
    mosaic_png: str | None
    ccd_png: dict[int, str]


class ErrorBody(BaseModel):
    """Error document of the API."""

    detail: str
