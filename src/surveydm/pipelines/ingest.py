"""Ingest of a night: transfer the observatory buffer, then register what was archived, and
summarise per obs set what was archived, registered, left pending and rejected (with reasons).

This is what runs every morning (PAUdm data transfer then register job submission, seed 000
section 3 and section 6.1 item 1). Files rejected at either stage stay recoverable: bad input
is in the archive's quarantine with a reason file, or in the archive (a file whose bytes match
the manifest but whose headers cannot be registered: raw data is sacred), or in the buffer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from surveydm.archive import Archive
from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.instruments import Instrument
from surveydm.pipelines.manifest import MANIFEST_NAME
from surveydm.pipelines.register import RegisterReport, register_obs_set
from surveydm.pipelines.transfer import (
    DEFAULT_SETTLE_SECONDS,
    ProgressEvent,
    ProgressFn,
    TransferReport,
    transfer_buffer,
)


@dataclass
class ObsSetSummary:
    """One obs set's line of the ingest summary.

    ``status``: ``ok`` (all listed files archived and registered), ``pending`` (still being
    written in the buffer), ``rejected`` (some or all files rejected, see ``rejected``),
    ``failed`` (the archive could not be written: retried on the next run).
    """

    obs_set: str
    night: date | None
    status: str
    copied: int = 0
    bytes_copied: int = 0
    archived: int = 0
    registered: int = 0
    already_registered: int = 0
    pending_reason: str | None = None
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (file, stage, reason)


@dataclass
class IngestReport:
    """Transfer report, register reports per obs set, and the per-obs-set summary."""

    transfer: TransferReport
    register: dict[str, RegisterReport] = field(default_factory=dict)
    summary: list[ObsSetSummary] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing was rejected and no write failed (pending sets are fine)."""
        return all(s.status in ("ok", "pending") for s in self.summary)

    @property
    def n_rejected(self) -> int:
        """Number of rejected files (both stages)."""
        return sum(len(s.rejected) for s in self.summary)


def ingest(
    registry: Registry,
    archive: Archive,
    buffer_dir: Path,
    *,
    instrument: Instrument | str | None = None,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Transfer every ready obs set of ``buffer_dir`` and register its archived files.

    Args:
        registry, archive: where files and rows go.
        buffer_dir: the observatory buffer (``<obs_set>/manifest.yaml`` + raw files).
        instrument: override of the manifests' instrument (object, name or YAML path).
        settle_seconds: see :func:`surveydm.pipelines.transfer.transfer_buffer`.
        progress: called per file in both stages (``ProgressEvent.stage`` transfer/register).

    Returns:
        The report; bad input is reported there, not raised.

    Raises:
        FileNotFoundError: ``buffer_dir`` is not a directory.
    """
    t0 = time.perf_counter()
    tr = transfer_buffer(
        registry, archive, buffer_dir, settle_seconds=settle_seconds, progress=progress
    )
    report = IngestReport(tr)
    for ot in tr.obs_sets:
        summary = ObsSetSummary(ot.obs_set, ot.night, "ok")
        summary.copied = ot.count("archived")
        summary.bytes_copied = ot.bytes_copied
        summary.archived = sum(
            1 for f in ot.files if f.status in ("archived", "reused") and f.name != MANIFEST_NAME
        )
        summary.rejected = [(f.name, "transfer", f.reason or f.status) for f in ot.rejected]
        if ot.status == "pending":
            summary.status, summary.pending_reason = "pending", ot.reason
            report.summary.append(summary)
            continue
        if ot.status == "rejected":
            summary.status = "rejected"
            report.summary.append(summary)
            continue

        def reg_progress(name: str, done: int, total: int, _set: str = ot.obs_set) -> None:
            if progress:
                progress(ProgressEvent("register", _set, name, done, total))

        try:
            rr = register_obs_set(registry, archive, ot.obs_set, instrument, progress=reg_progress)
        except SurveydmError as exc:  # e.g. the manifest names an unknown instrument
            summary.rejected.append(("(all files)", "register", str(exc)))
        else:
            report.register[ot.obs_set] = rr
            summary.registered = len(rr.registered)
            summary.already_registered = len(rr.already)
            summary.rejected += [(name, "register", why) for name, why in rr.rejected]
        if any(f.status == "failed" for f in ot.files):
            summary.status = "failed"
        elif summary.rejected:
            summary.status = "rejected"
        report.summary.append(summary)
    report.elapsed_s = time.perf_counter() - t0
    return report
