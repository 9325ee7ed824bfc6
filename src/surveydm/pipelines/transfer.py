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

import yaml
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
    normalise_adler32,
)
from surveydm.db import Registry
from surveydm.db.base import utcnow
from surveydm.db.models.raw import RAW_KINDS, ArchiveFile, ObsSet, Project
from surveydm.errors import SurveydmError

MANIFEST_NAME = "manifest.yaml"
#: Seconds a short file must have been left untouched before it counts as truncated.
DEFAULT_SETTLE_SECONDS = 300.0


class ManifestError(SurveydmError):
    """A manifest is not valid YAML or lacks / mistypes a field (the message names it)."""


@dataclass(frozen=True)
class ManifestFile:
    """One file listed in a manifest: name, kind, size (bytes), adler32 (8 hex)."""

    name: str
    kind: str
    size: int
    adler32: str


@dataclass(frozen=True)
class Manifest:
    """A parsed observation-set manifest (see the module docstring for the format)."""

    obs_set: str
    night: date
    instrument: str
    files: tuple[ManifestFile, ...]
    operator: str | None = None
    project: str | None = None
    comments: str | None = None
    mjd_start: float | None = None
    mjd_stop: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str, source: str = MANIFEST_NAME) -> Manifest:
        """Validate a manifest's YAML text.

        Raises:
            ManifestError: not YAML, not a mapping, a missing or mistyped field, a bad file
                name, kind, size or adler32, or a file listed twice (the message says which).
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ManifestError(f"{source}: not valid YAML ({exc})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: expected a mapping at the top level")

        def need(key: str) -> Any:
            if data.get(key) in (None, ""):
                raise ManifestError(f"{source}: missing field {key!r}")
            return data[key]

        obs_set = str(need("obs_set"))
        if "/" in obs_set or obs_set.startswith("."):
            raise ManifestError(f"{source}: bad obs_set {obs_set!r}")
        night_raw = need("night")
        try:
            night = night_raw if isinstance(night_raw, date) else date.fromisoformat(str(night_raw))
        except ValueError:
            raise ManifestError(f"{source}: night {night_raw!r} is not YYYY-MM-DD") from None
        files_raw = need("files")
        if not isinstance(files_raw, list):
            raise ManifestError(f"{source}: 'files' must be a list")
        files: list[ManifestFile] = []
        seen: set[str] = set()
        for i, entry in enumerate(files_raw):
            where = f"{source}: files[{i}]"
            if not isinstance(entry, dict):
                raise ManifestError(f"{where}: expected a mapping with name, kind, size, adler32")
            for key in ("name", "kind", "size", "adler32"):
                if entry.get(key) in (None, ""):
                    raise ManifestError(f"{where}: missing field {key!r}")
            name = str(entry["name"])
            if "/" in name or name in (".", "..", MANIFEST_NAME) or name.startswith("."):
                raise ManifestError(f"{where}: bad file name {name!r}")
            if name in seen:
                raise ManifestError(f"{where}: {name} listed twice")
            seen.add(name)
            kind = str(entry["kind"]).lower()
            if kind not in RAW_KINDS:
                raise ManifestError(f"{where}: kind {kind!r} not one of {', '.join(RAW_KINDS)}")
            size = entry["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ManifestError(f"{where}: size {size!r} is not a byte count")
            try:
                adler = normalise_adler32(entry["adler32"])
            except ValueError as exc:
                raise ManifestError(f"{where}: {exc}") from None
            files.append(ManifestFile(name, kind, size, adler))

        def number(key: str) -> float | None:
            v = data.get(key)
            if v is None:
                return None
            try:
                return float(v)
            except (TypeError, ValueError):
                raise ManifestError(f"{source}: {key} {v!r} is not a number") from None

        def text_field(key: str) -> str | None:
            v = data.get(key)
            return None if v is None else str(v)

        return cls(
            obs_set=obs_set,
            night=night,
            instrument=str(need("instrument")),
            files=tuple(files),
            operator=text_field("operator"),
            project=text_field("project"),
            comments=text_field("comments"),
            mjd_start=number("mjd_start"),
            mjd_stop=number("mjd_stop"),
            raw=_jsonable(data),
        )

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read and validate a manifest file. Raises ManifestError (also when unreadable)."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read ({exc})") from None
        return cls.parse(text, str(path))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


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
    name = directory.name
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
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
    result = ObsSetTransfer(name, "done", directory, night=manifest.night)
    pending, problems = _readiness(directory, manifest, settle_seconds, time.time())
    if pending:
        result.status, result.reason = "pending", pending
        return result

    rel_dir = f"raw/{manifest.night.isoformat()}/{manifest.obs_set}"
    archive.clean_temporaries(rel_dir)
    obs = _record_obs_set(registry, manifest)
    with registry.session(write=False) as s:
        known = {
            row.path: row
            for row in s.scalars(
                select(ArchiveFile).where(ArchiveFile.path.like(f"{rel_dir}/%"))
            ).all()
        }
    log: list[str] = []
    listed = {f.name for f in manifest.files}
    entries: list[tuple[str, int | None, str | None]] = [
        (f.name, f.size, f.adler32) for f in manifest.files
    ]
    entries.append((MANIFEST_NAME, None, None))
    names = {e[0] for e in entries}

    def tick(fname: str, nbytes: int = 0) -> None:
        if progress:
            done = len({f.name for f in result.files} & names)
            progress(ProgressEvent("transfer", name, fname, done, len(entries), nbytes))

    def reject(fname: str, reason: str, *, keep: bool = True) -> None:
        q = archive.quarantine(directory / fname, name, reason, stamp=stamp) if keep else None
        result.files.append(FileOutcome(fname, "rejected", 0, None, reason, q))
        log.append(f"transfer: {fname} rejected: {reason}")
        tick(fname)

    def fail(fname: str, exc: Exception) -> None:
        # A fault of the archive (disk full, I/O error), not of the data: retried next run.
        result.files.append(FileOutcome(fname, "failed", 0, None, str(exc)))
        log.append(f"transfer: {fname} failed: {exc}")

    def record(fname: str, stored: StoredFile) -> None:
        try:
            _record_file(registry, stored)
        except ArchiveConflict as exc:
            reject(fname, str(exc))
            return
        status = "reused" if stored.reused else "archived"
        result.files.append(FileOutcome(fname, status, stored.size, stored.path))
        tick(fname, 0 if stored.reused else stored.size)

    # Copy file i+1 while file i is flushed to disk and published (Archive.stage / commit).
    inflight: tuple[Future[StoredFile], str] | None = None

    def settle() -> bool:
        """Finish the commit in flight and record it; False when the archive failed."""
        nonlocal inflight
        if inflight is None:
            return True
        future, fname = inflight
        inflight = None
        try:
            stored = future.result()
        except ArchiveConflict as exc:
            reject(fname, str(exc))
            return True
        except ArchiveWriteError as exc:
            fail(fname, exc)
            return False
        record(fname, stored)
        return True

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit") as committer:
        for fname, size, adler in entries:
            rel = f"{rel_dir}/{fname}"
            row = known.get(rel)
            if row is not None and size is not None and (row.size, row.adler32) == (size, adler):
                result.files.append(FileOutcome(fname, "reused", row.size, rel))
                tick(fname)
                continue
            if fname in problems:
                reject(fname, problems[fname])
                continue
            try:
                staged = archive.stage(
                    directory / fname, rel, expected_adler32=adler, expected_size=size
                )
            except ChecksumMismatch as exc:
                reject(
                    fname,
                    f"adler32 mismatch: the file has {exc.actual}, the manifest "
                    f"says {exc.expected}",
                )
                continue
            except SizeMismatch as exc:
                reject(
                    fname,
                    f"size mismatch: the file has {exc.actual} bytes, the manifest "
                    f"says {exc.expected}",
                )
                continue
            except ArchiveConflict as exc:
                reject(fname, str(exc))
                continue
            except ArchiveWriteError as exc:
                settle()
                fail(fname, exc)
                break
            except FileNotFoundError as exc:  # vanished between the check and the copy
                reject(
                    fname,
                    f"disappeared from the buffer during the transfer ({exc.strerror})",
                    keep=False,
                )
                continue
            if not settle():
                if isinstance(staged, StagedFile):
                    archive.discard(staged)
                break
            if isinstance(staged, StoredFile):  # identical bytes already archived
                record(fname, staged)
            else:
                inflight = (committer.submit(archive.commit, staged), fname)
        settle()

    for extra in sorted(p for p in directory.iterdir() if p.is_file()):
        if extra.name in listed or extra.name == MANIFEST_NAME or extra.name.startswith("."):
            continue
        reason = "present in the buffer but not listed in the manifest"
        q = archive.quarantine(extra, name, reason, stamp=stamp)
        result.files.append(FileOutcome(extra.name, "rejected", 0, None, reason, q))
        log.append(f"transfer: {extra.name} rejected: {reason}")

    copied = result.count("archived")
    if copied:
        log.insert(0, f"transfer: {copied} file(s) archived in {rel_dir}")
    _append_log(registry, obs.id, log)
    if result.rejected:
        result.status = "partial"
        result.reason = f"{len(result.rejected)} file(s) rejected or failed"
    return result


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


# -- verification -------------------------------------------------------------------------


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
        prefix = f"raw/{night.isoformat()}/{obs_set}/"
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
