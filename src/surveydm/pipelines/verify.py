"""Re-verification of the archive against the registry: every registered file is re-read
and its size, adler32 and md5 compared with its ``archive_file`` row (seed 000 section 4), and
the temporary files of killed writers are found and removed."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from surveydm.archive import Archive
from surveydm.db import Registry
from surveydm.db.base import utcnow
from surveydm.db.models.raw import ArchiveFile, ObsSet
from surveydm.errors import SurveydmError
from surveydm.pipelines.transfer import ProgressEvent, ProgressFn


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_archive`: files checked, those found corrupt or missing
    (archive paths), those marked archived again after being restored, those whose md5
    was recorded now (matching files that had none yet), and the temporary files of unfinished
    writes: removed (their writer is gone) or still being written."""

    checked: int = 0
    bytes_read: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    md5_recorded: list[str] = field(default_factory=list)
    temporaries_removed: list[str] = field(default_factory=list)
    temporaries_live: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every checked file matches its record."""
        return not self.corrupt and not self.missing


def verify_archive(
    registry: Registry,
    archive: Archive,
    *,
    obs_set: str | None = None,
    path_prefix: str | None = None,
    mark: bool = True,
    progress: ProgressFn | None = None,
) -> VerifyReport:
    """Re-read registered files and compare size, adler32 and md5 with the registry.

    Args:
        obs_set: only the files of this obs set (``raw/<night>/<obs_set>/``).
        path_prefix: only files whose archive path starts with this.
        mark: record the outcome: ``state`` (``corrupt`` / ``missing``, or back to
            ``archived`` for a file that matches again), ``verified`` time, and the md5 of a
            matching file that had none (a file transferred but not registered yet); and
            remove the stale temporary files of killed writers under the checked prefix
            (:meth:`Archive.temporaries`; live writers' files are only reported).

    Returns:
        The report (this function does not raise on mismatches; the CLI exits non-zero).

    Raises:
        SurveydmError: ``obs_set`` is not registered.
    """
    prefix = path_prefix
    if obs_set is not None:
        with registry.session(write=False) as s:
            night = s.scalars(select(ObsSet.night).where(ObsSet.obs_set == obs_set)).first()
        if night is None:
            raise SurveydmError(f"obs set {obs_set!r} is not registered")
        prefix = Archive.raw_dir(night, obs_set) + "/"
    query = select(ArchiveFile.id, ArchiveFile.path, ArchiveFile.size, ArchiveFile.adler32)
    query = query.add_columns(ArchiveFile.md5, ArchiveFile.state).order_by(ArchiveFile.path)
    if prefix:
        query = query.where(ArchiveFile.path.startswith(prefix, autoescape=True))
    with registry.session(write=False) as s:
        rows = s.execute(query).all()
    report = VerifyReport()
    for i, (fid, path, size, adler, md5, state) in enumerate(rows):
        problem, sums = archive.verify_file(path, size, adler, md5)
        report.checked += 1
        if problem == "corrupt":
            report.corrupt.append(path)
        elif problem == "missing":
            report.missing.append(path)
        else:
            report.bytes_read += size
            if state != "archived":
                report.restored.append(path)
            if md5 is None and mark:
                report.md5_recorded.append(path)
        if mark:
            with registry.session() as s:
                row = s.get(ArchiveFile, fid)
                row.state = problem or "archived"
                row.verified = utcnow()
                if problem is None and row.md5 is None and sums is not None:
                    row.md5 = sums.md5
        if progress:
            progress(ProgressEvent("verify", "", path, i + 1, len(rows), size))
    _check_temporaries(archive, report, prefix, clean=mark)
    return report


def _check_temporaries(
    archive: Archive, report: VerifyReport, prefix: str | None, *, clean: bool
) -> None:
    """Report (and with ``clean`` remove) the temporaries under the directory of ``prefix``."""
    rel_dir = prefix.rsplit("/", 1)[0] if prefix and "/" in prefix else ""
    for temporary in archive.temporaries(rel_dir):
        if not temporary.path.startswith(prefix or ""):
            continue
        if not temporary.stale:
            report.temporaries_live.append(temporary.path)
        elif clean:
            archive.abspath(temporary.path).unlink(missing_ok=True)
            report.temporaries_removed.append(temporary.path)
