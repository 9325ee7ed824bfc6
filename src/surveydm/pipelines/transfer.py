"""Transfer of observation sets from the observatory buffer into the archive and the registry.

The observatory buffer holds one directory per observation set, ``<buffer>/<obs_set>/``, with
the raw FITS files and the data acquisition's ``manifest.yaml`` (obs set, night, instrument,
operator, project, comments, MJD range, and the list of files with kind, size and adler32;
PAUdm, seed 000 section 3). Each morning :func:`transfer_buffer` copies every new set into
``raw/<night>/<obs_set>/`` of the archive, verifying each file against the manifest's adler32
*while* copying, and records the files (``archive_file``: size and adler32; the md5 follows
when the file is first read in full, see :mod:`surveydm.archive.checksum`) and the set
(``obs_set``, with the manifest as JSON, and its ``project``) in short transactions.

When is a set ready? The DAQ writes the manifest last, so:

* no ``manifest.yaml`` yet: the set is still being written -> *pending*, left for the next run;
* a listed file shorter than its manifest size and modified less than ``settle_seconds`` ago:
  still arriving -> *pending* (the whole set waits);
* with the manifest present, a listed file that is absent, or short and quiet for longer than
  ``settle_seconds``, is an error (*missing* / *truncated*); the set's good files are archived.

Bad input never stops the night and loses nothing: a file whose bytes do not match the
manifest (checksum or size), or present but not listed, is copied to the archive's quarantine
with a reason file; a malformed manifest is quarantined and its set left in the buffer; the
buffer itself is never modified (the operator frees it once ingest is complete, seed 000 s. 3).

Idempotence and crashes: a file already recorded with the manifest's size and adler32 is not
read again. A run killed at any point leaves either a temporary file in the archive (removed by
the next run, whose writer is dead), or a published file without its ``archive_file`` row (the
next run recognises identical bytes and records it), never a half file under a final name.
Two transfers at once are safe: the archive never overwrites (``os.link``) and the unique
``archive_file.path`` / ``obs_set.obs_set`` constraints turn a lost race into a re-read of
the winner's row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from surveydm.archive import (
    Archive,
    ArchiveConflict,
    ArchiveWriteError,
    ChecksumMismatch,
    SizeMismatch,
    StagedFile,
    StoredFile,
)
from surveydm.db import Registry
from surveydm.db.base import utcnow
from surveydm.db.models.raw import ArchiveFile, ObsSet, Project
from surveydm.errors import SurveydmError
from surveydm.pipelines.manifest import MANIFEST_NAME, Manifest, ManifestError

#: Seconds a short file must have been left untouched before it counts as truncated.
DEFAULT_SETTLE_SECONDS = 300.0


# -- reports ------------------------------------------------------------------------------


@dataclass
class FileOutcome:
    """What happened to one file of an obs set.

    ``status``: ``archived`` (copied now), ``reused`` (already archived before, nothing
    copied), ``rejected`` (bad: checksum/size mismatch, truncated, missing, unlisted, conflict;
    see ``reason`` and ``quarantine``), ``failed`` (the write failed, e.g. disk full: retried
    on the next run).
    """

    name: str
    status: str
    size: int = 0
    path: str | None = None
    reason: str | None = None
    quarantine: Path | None = None


@dataclass
class ObsSetTransfer:
    """Transfer outcome of one obs set directory.

    ``status``: ``done`` (every listed file archived), ``partial`` (some files rejected or
    failed), ``pending`` (still being written: left for the next run), ``rejected``
    (malformed manifest: nothing archived).
    """

    obs_set: str
    status: str
    directory: Path
    night: date | None = None
    reason: str | None = None
    files: list[FileOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Number of files with ``status``."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def bytes_copied(self) -> int:
        """Bytes copied into the archive by this run."""
        return sum(f.size for f in self.files if f.status == "archived")

    @property
    def rejected(self) -> list[FileOutcome]:
        """Files rejected or whose copy failed."""
        return [f for f in self.files if f.status in ("rejected", "failed")]


@dataclass
class TransferReport:
    """Outcome of one :func:`transfer_buffer` run: per obs set, totals and throughput."""

    obs_sets: list[ObsSetTransfer] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def files_copied(self) -> int:
        """Files copied into the archive by this run."""
        return sum(o.count("archived") for o in self.obs_sets)

    @property
    def bytes_copied(self) -> int:
        """Bytes copied into the archive by this run."""
        return sum(o.bytes_copied for o in self.obs_sets)

    @property
    def mib_per_s(self) -> float:
        """Copy throughput of the run, MiB/s (0 when nothing was copied)."""
        return self.bytes_copied / 2**20 / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when nothing was rejected or failed (pending sets are not errors)."""
        return all(o.status in ("done", "pending") for o in self.obs_sets)


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of a long step: ``stage`` (transfer, register, verify), the obs set and file,
    files done / total in this obs set, and bytes just processed."""

    stage: str
    obs_set: str
    filename: str
    done: int
    total: int
    nbytes: int = 0


ProgressFn = Callable[[ProgressEvent], None]


# -- registry helpers ---------------------------------------------------------------------


def _get_or_create(registry: Registry, model: type, key: dict[str, Any], **values: Any) -> Any:
    """The row of ``model`` matching ``key``, inserting it if absent (race-safe)."""
    for _ in range(3):
        with registry.session(write=False) as s:
            row = s.scalars(select(model).filter_by(**key)).one_or_none()
            if row is not None:
                return row
        try:
            with registry.session() as s:
                row = model(**key, **values)
                s.add(row)
                s.flush()
                return row
        except IntegrityError:
            continue  # another process inserted it first: read theirs
    raise SurveydmError(f"cannot insert or find {model.__name__} {key}")


def _record_file(registry: Registry, stored: StoredFile) -> ArchiveFile:
    """Insert the ``archive_file`` row of a transferred file (size and adler32; its md5 comes
    later, see the module docstring), or return the matching existing one.

    Raises:
        ArchiveConflict: a row for this path exists with a different size or adler32.
    """
    row = _get_or_create(
        registry,
        ArchiveFile,
        {"path": stored.path},
        size=stored.size,
        adler32=stored.adler32,
        state="archived",
        verified=utcnow(),
    )
    if (row.size, row.adler32) != (stored.size, stored.adler32):
        raise ArchiveConflict(
            f"{stored.path}: the registry records {row.size} bytes adler32 {row.adler32}, "
            f"the file has {stored.size} bytes adler32 {stored.adler32}"
        )
    return row


def _append_log(registry: Registry, obs_set_id: int, lines: list[str]) -> None:
    if not lines:
        return
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with registry.session() as s:
        row = s.get(ObsSet, obs_set_id, with_for_update=registry.dialect == "postgresql")
        text = "".join(f"{stamp} {line}\n" for line in lines)
        row.log = (row.log or "") + text


def _record_obs_set(registry: Registry, manifest: Manifest) -> ObsSet:
    project_id = None
    if manifest.project:
        project_id = _get_or_create(registry, Project, {"name": manifest.project}).id
    return _get_or_create(
        registry,
        ObsSet,
        {"obs_set": manifest.obs_set},
        night=manifest.night,
        instrument=manifest.instrument,
        operator=manifest.operator,
        project_id=project_id,
        comments=manifest.comments,
        mjd_start=manifest.mjd_start,
        mjd_stop=manifest.mjd_stop,
        manifest=manifest.raw,
        n_files=len(manifest.files),
    )


# -- transfer -----------------------------------------------------------------------------


def _readiness(
    directory: Path, manifest: Manifest, settle_seconds: float, now: float
) -> tuple[str | None, dict[str, str]]:
    """(pending reason or None, {file name: problem}) for a set whose manifest is present."""
    problems: dict[str, str] = {}
    for f in manifest.files:
        path = directory / f.name
        try:
            st = path.stat()
        except FileNotFoundError:
            problems[f.name] = "listed in the manifest but missing from the buffer"
            continue
        if st.st_size < f.size:
            if now - st.st_mtime < settle_seconds:
                return (
                    f"{f.name} has {st.st_size} of {f.size} bytes and is still growing "
                    f"(modified {now - st.st_mtime:.0f} s ago)",
                    {},
                )
            problems[f.name] = (
                f"truncated: {st.st_size} bytes of the {f.size} listed in the manifest, "
                f"unchanged for {now - st.st_mtime:.0f} s"
            )
    return None, problems


def _read_manifest(archive: Archive, directory: Path, stamp: str) -> Manifest | ObsSetTransfer:
    """The set's manifest, or its outcome when there is none yet (pending) or it is malformed
    (quarantined: rejected)."""
    name = directory.name
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        return ObsSetTransfer(name, "pending", directory, reason="no manifest yet")
    try:
        manifest = Manifest.read(manifest_path)
        if manifest.obs_set != name:
            raise ManifestError(
                f"{manifest_path}: obs_set {manifest.obs_set!r} differs from the directory name"
            )
    except ManifestError as exc:
        q = archive.quarantine(manifest_path, name, str(exc), stamp=stamp)
        return ObsSetTransfer(
            name,
            "rejected",
            directory,
            reason=f"{exc}; files left in the buffer",
            files=[FileOutcome(MANIFEST_NAME, "rejected", reason=str(exc), quarantine=q)],
        )
    return manifest


def transfer_obs_set(
    registry: Registry,
    archive: Archive,
    directory: Path,
    *,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    progress: ProgressFn | None = None,
    stamp: str | None = None,
) -> ObsSetTransfer:
    """Transfer one obs set directory of the buffer (see the module docstring for the rules).

    Returns:
        The set's outcome; bad files are reported there, not raised.

    Raises:
        sqlalchemy errors when the registry is unreachable (a fault: retry the run).
    """
    directory = Path(directory)
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    manifest = _read_manifest(archive, directory, stamp)
    if isinstance(manifest, ObsSetTransfer):
        return manifest
    result = ObsSetTransfer(directory.name, "done", directory, night=manifest.night)
    pending, problems = _readiness(directory, manifest, settle_seconds, time.time())
    if pending:
        result.status, result.reason = "pending", pending
        return result
    copy = _ObsSetCopy(registry, archive, manifest, result, stamp, progress)
    copy.run(problems)
    return result


@dataclass
class _Entry:
    """A file to copy: its name and, for listed files, the manifest's size and adler32."""

    name: str
    size: int | None = None
    adler32: str | None = None


class _ObsSetCopy:
    """The copy of one ready obs set into ``raw/<night>/<obs_set>/``: each file is staged
    (copied + adler32 verified) while the previous one is flushed and published in a helper
    thread (:meth:`Archive.stage` / :meth:`Archive.commit`), then recorded in the registry."""

    def __init__(
        self,
        registry: Registry,
        archive: Archive,
        manifest: Manifest,
        result: ObsSetTransfer,
        stamp: str,
        progress: ProgressFn | None,
    ) -> None:
        self.registry, self.archive, self.manifest = registry, archive, manifest
        self.result, self.stamp, self.progress = result, stamp, progress
        self.directory = result.directory
        self.entries = [_Entry(f.name, f.size, f.adler32) for f in manifest.files]
        self.entries.append(_Entry(MANIFEST_NAME))
        self.names = frozenset(e.name for e in self.entries)
        self.log: list[str] = []
        self.inflight: tuple[Future[StoredFile], str] | None = None

    def path(self, fname: str) -> str:
        return Archive.raw_path(self.manifest.night, self.manifest.obs_set, fname)

    def run(self, problems: dict[str, str]) -> None:
        """Copy every entry (those in ``problems`` are rejected), quarantine unlisted files,
        append the set's log and set the outcome's status."""
        rel_dir = Archive.raw_dir(self.manifest.night, self.manifest.obs_set)
        self.archive.clean_temporaries(rel_dir)
        obs = _record_obs_set(self.registry, self.manifest)
        known = self._known(rel_dir)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit") as committer:
            for entry in self.entries:
                if not self._copy(entry, known, problems, committer):
                    break
            self._settle()
        self._quarantine_unlisted()
        result = self.result
        if copied := result.count("archived"):
            self.log.insert(0, f"transfer: {copied} file(s) archived in {rel_dir}")
        _append_log(self.registry, obs.id, self.log)
        if result.rejected:
            result.status = "partial"
            result.reason = f"{len(result.rejected)} file(s) rejected or failed"

    def _known(self, rel_dir: str) -> dict[str, ArchiveFile]:
        with self.registry.session(write=False) as s:
            rows = s.scalars(select(ArchiveFile).where(ArchiveFile.path.like(f"{rel_dir}/%")))
            return {row.path: row for row in rows.all()}

    def _copy(
        self,
        entry: _Entry,
        known: dict[str, ArchiveFile],
        problems: dict[str, str],
        committer: ThreadPoolExecutor,
    ) -> bool:
        """Copy one entry; False when the archive failed and the set must stop."""
        fname, rel = entry.name, self.path(entry.name)
        row = known.get(rel)
        if (
            row is not None
            and entry.size is not None
            and (row.size, row.adler32)
            == (
                entry.size,
                entry.adler32,
            )
        ):
            self.result.files.append(FileOutcome(fname, "reused", row.size, rel))
            self._tick(fname)
            return True
        if fname in problems:
            self._reject(fname, problems[fname])
            return True
        staged = self._stage(entry, rel)
        if staged is None:
            return True
        if isinstance(staged, ArchiveWriteError):
            self._settle()
            self._fail(fname, staged)
            return False
        if not self._settle():
            if isinstance(staged, StagedFile):
                self.archive.discard(staged)
            return False
        if isinstance(staged, StoredFile):  # identical bytes already archived
            self._record(fname, staged)
        else:
            self.inflight = (committer.submit(self.archive.commit, staged), fname)
        return True

    def _stage(self, entry: _Entry, rel: str) -> StagedFile | StoredFile | ArchiveWriteError | None:
        """Stage one file; None when it was rejected, the error when the archive failed."""
        fname = entry.name
        try:
            return self.archive.stage(
                self.directory / fname,
                rel,
                expected_adler32=entry.adler32,
                expected_size=entry.size,
            )
        except ChecksumMismatch as exc:
            reason = (
                f"adler32 mismatch: the file has {exc.actual}, the manifest says {exc.expected}"
            )
            self._reject(fname, reason)
        except SizeMismatch as exc:
            reason = (
                f"size mismatch: the file has {exc.actual} bytes, the manifest says {exc.expected}"
            )
            self._reject(fname, reason)
        except ArchiveConflict as exc:
            self._reject(fname, str(exc))
        except ArchiveWriteError as exc:
            return exc
        except FileNotFoundError as exc:  # vanished between the check and the copy
            reason = f"disappeared from the buffer during the transfer ({exc.strerror})"
            self._reject(fname, reason, keep=False)
        return None

    def _settle(self) -> bool:
        """Finish the commit in flight and record it; False when the archive failed."""
        if self.inflight is None:
            return True
        future, fname = self.inflight
        self.inflight = None
        try:
            stored = future.result()
        except ArchiveConflict as exc:
            self._reject(fname, str(exc))
            return True
        except ArchiveWriteError as exc:
            self._fail(fname, exc)
            return False
        self._record(fname, stored)
        return True

    def _tick(self, fname: str, nbytes: int = 0) -> None:
        if self.progress:
            done = len({f.name for f in self.result.files} & self.names)
            event = ProgressEvent(
                "transfer", self.result.obs_set, fname, done, len(self.entries), nbytes
            )
            self.progress(event)

    def _reject(self, fname: str, reason: str, *, keep: bool = True) -> None:
        path = self.directory / fname
        q = (
            self.archive.quarantine(path, self.result.obs_set, reason, stamp=self.stamp)
            if keep
            else None
        )
        self.result.files.append(FileOutcome(fname, "rejected", 0, None, reason, q))
        self.log.append(f"transfer: {fname} rejected: {reason}")
        self._tick(fname)

    def _fail(self, fname: str, exc: Exception) -> None:
        # A fault of the archive (disk full, I/O error), not of the data: retried next run.
        self.result.files.append(FileOutcome(fname, "failed", 0, None, str(exc)))
        self.log.append(f"transfer: {fname} failed: {exc}")

    def _record(self, fname: str, stored: StoredFile) -> None:
        try:
            _record_file(self.registry, stored)
        except ArchiveConflict as exc:
            self._reject(fname, str(exc))
            return
        status = "reused" if stored.reused else "archived"
        self.result.files.append(FileOutcome(fname, status, stored.size, stored.path))
        self._tick(fname, 0 if stored.reused else stored.size)

    def _quarantine_unlisted(self) -> None:
        for extra in sorted(p for p in self.directory.iterdir() if p.is_file()):
            if extra.name in self.names or extra.name.startswith("."):
                continue
            reason = "present in the buffer but not listed in the manifest"
            q = self.archive.quarantine(extra, self.result.obs_set, reason, stamp=self.stamp)
            self.result.files.append(FileOutcome(extra.name, "rejected", 0, None, reason, q))
            self.log.append(f"transfer: {extra.name} rejected: {reason}")


def find_obs_set_dirs(buffer_dir: Path) -> list[Path]:
    """Obs set directories of the buffer (sorted; hidden ones skipped).

    Raises:
        FileNotFoundError: ``buffer_dir`` is not a directory.
    """
    buffer_dir = Path(buffer_dir)
    if not buffer_dir.is_dir():
        raise FileNotFoundError(f"observatory buffer {buffer_dir} is not a directory")
    return sorted(p for p in buffer_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def transfer_buffer(
    registry: Registry,
    archive: Archive,
    buffer_dir: Path,
    *,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    progress: ProgressFn | None = None,
) -> TransferReport:
    """Transfer every ready obs set of the observatory buffer into the archive and registry.

    Args:
        registry: the registry.
        archive: the archive (``Archive(settings.archive_root)``).
        buffer_dir: the observatory buffer, one ``<obs_set>/`` directory per set.
        settle_seconds: how long a short file must stay unchanged before it is truncated
            rather than still arriving.
        progress: called after each file copied.

    Returns:
        Per-set outcomes, files and bytes copied, elapsed seconds and MiB/s.

    Raises:
        FileNotFoundError: ``buffer_dir`` is not a directory.
    """
    t0 = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = TransferReport()
    for directory in find_obs_set_dirs(buffer_dir):
        report.obs_sets.append(
            transfer_obs_set(
                registry,
                archive,
                directory,
                settle_seconds=settle_seconds,
                progress=progress,
                stamp=stamp,
            )
        )
    report.elapsed_s = time.perf_counter() - t0
    return report
