"""The file archive: organised layout, atomic never-overwriting writes, quarantine.

Layout under the archive root (PAUdm archive, seed 000 section 4, figure 2)::

    raw/<night YYYY-MM-DD>/<obs_set>/<file>         raw exposures and the manifest, as received
    red/<release>/<obs_set>/<file>                  reduced products of one release
    quarantine/<UTC stamp>_<obs_set>/<file>          rejected input, with <file>.reason.txt

Every write goes to a temporary file in the destination directory (named
``.tmp.<host>.<pid>.<random>.<file>``), is fsynced, published with ``os.link`` (atomic and
never overwriting: it fails if the destination exists) and the directory is fsynced. A
destination that already exists is compared with the new content: identical bytes are
recognised and reused (so an interrupted run can be repeated), different bytes raise
:class:`ArchiveConflict`. Raw data is sacred (seed 003): nothing here deletes archived files.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

from surveydm.archive.checksum import (
    CHUNK_SIZE,
    Checksums,
    copy_with_adler32,
    file_checksums,
    normalise_adler32,
)
from surveydm.archive.errors import (
    ArchiveConflict,
    ArchiveWriteError,
    ChecksumMismatch,
    InvalidArchivePath,
    SizeMismatch,
)

TMP_PREFIX = ".tmp."
_TMP_RE = re.compile(r"^\.tmp\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[0-9a-f]+\.")
_HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"

#: Signature of the write layer: like ``os.write(fd, data) -> bytes written``.
WriteFunc = Callable[[int, memoryview], int]


@dataclass(frozen=True)
class StoredFile:
    """A file in the archive.

    Attributes:
        path: path relative to the archive root (POSIX, what ``archive_file.path`` stores).
        size: bytes.
        adler32: 8 lowercase hex digits.
        md5: 32 lowercase hex digits; None for a raw file just transferred (its md5 is
            computed at registration or by the first verification, see
            :mod:`surveydm.archive.checksum`).
        reused: True when an identical file was already there and nothing was written.
    """

    path: str
    size: int
    adler32: str
    md5: str | None
    reused: bool = False


@dataclass(frozen=True)
class StagedFile:
    """A verified copy in a temporary file, not yet durable nor published (see
    :meth:`Archive.stage`)."""

    path: str
    tmp: Path
    sums: Checksums


@dataclass(frozen=True)
class RawPath:
    """The parts of a raw file's archive path ``raw/<night>/<obs_set>/<filename>``."""

    night: str
    obs_set: str
    filename: str


@dataclass(frozen=True)
class Temporary:
    """A temporary file of an unfinished write (see :meth:`Archive.temporaries`).

    Attributes:
        path: path relative to the archive root.
        host: host name of its writer.
        pid: process id of its writer on that host.
        stale: True when its writer is gone (it will never be published).
    """

    path: str
    host: str
    pid: int
    stale: bool


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Archive:
    """The archive rooted at ``root`` (``Settings.archive_root``).

    Args:
        root: archive root directory (created on first write).
        write: the write layer, ``os.write``-like; tests inject one that fails with ENOSPC
            half-way to show that a failed copy leaves nothing behind.
        chunk_size: bytes per read/write while copying.
    """

    def __init__(
        self, root: Path, *, write: WriteFunc | None = None, chunk_size: int = CHUNK_SIZE
    ) -> None:
        self.root = Path(root)
        self._write: WriteFunc = write or os.write
        self.chunk_size = chunk_size

    # -- layout ---------------------------------------------------------------------------

    @staticmethod
    def raw_dir(night: date | str, obs_set: str) -> str:
        """Relative directory of an obs set's raw files: ``raw/<night>/<obs_set>``."""
        night_s = night.isoformat() if isinstance(night, date) else str(night)
        return f"raw/{night_s}/{obs_set}"

    @staticmethod
    def raw_path(night: date | str, obs_set: str, filename: str) -> str:
        """Relative path of a raw file: ``raw/<night>/<obs_set>/<filename>``."""
        return f"{Archive.raw_dir(night, obs_set)}/{filename}"

    @staticmethod
    def parse_raw_path(rel_path: str) -> RawPath:
        """The night, obs set and file name of a raw file's relative path.

        Raises:
            InvalidArchivePath: ``rel_path`` is not ``raw/<night>/<obs_set>/<filename>``.
        """
        parts = rel_path.split("/")
        if len(parts) != 4 or parts[0] != "raw" or not all(parts):
            raise InvalidArchivePath(f"{rel_path}: not a raw file (raw/<night>/<obs_set>/<file>)")
        return RawPath(night=parts[1], obs_set=parts[2], filename=parts[3])

    @staticmethod
    def red_path(release: str, obs_set: str, filename: str) -> str:
        """Relative path of a reduced product: ``red/<release>/<obs_set>/<filename>``."""
        return f"red/{release}/{obs_set}/{filename}"

    def abspath(self, rel_path: str) -> Path:
        """Absolute path of ``rel_path`` under the root.

        Raises:
            InvalidArchivePath: absolute, empty, or containing ``..`` / empty components.
        """
        p = PurePosixPath(rel_path)
        if (
            not rel_path
            or p.is_absolute()
            or any(part in ("..", ".", "") for part in rel_path.split("/"))
            or "\\" in rel_path
        ):
            raise InvalidArchivePath(f"not a relative archive path: {rel_path!r}")
        return self.root.joinpath(*p.parts)

    # -- writing --------------------------------------------------------------------------

    def _tmp_path(self, dest: Path) -> Path:
        token = secrets.token_hex(4)
        return dest.with_name(f"{TMP_PREFIX}{_HOST}.{os.getpid()}.{token}.{dest.name}")

    def _publish(self, tmp: Path, dest: Path, rel_path: str, sums: Checksums) -> StoredFile:
        """Link ``tmp`` to ``dest`` without overwriting; remove ``tmp``; fsync the directory."""
        try:
            os.link(tmp, dest)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            return self._reuse_existing(dest, rel_path, sums)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                tmp.unlink(missing_ok=True)
                raise ArchiveWriteError(rel_path, exc) from exc
            # File system without hard links: check-then-rename (race window documented).
            if dest.exists():
                tmp.unlink(missing_ok=True)
                return self._reuse_existing(dest, rel_path, sums)
            os.replace(tmp, dest)
        else:
            tmp.unlink()
        _fsync_dir(dest.parent)
        return StoredFile(rel_path, sums.size, sums.adler32, sums.md5)

    def _reuse_existing(self, dest: Path, rel_path: str, sums: Checksums) -> StoredFile:
        existing = file_checksums(dest, self.chunk_size, md5=sums.md5 is not None)
        if existing != sums:
            raise ArchiveConflict(
                f"{rel_path} already exists in the archive with different content "
                f"({existing.size} bytes, adler32 {existing.adler32}; new: {sums.size} bytes, "
                f"adler32 {sums.adler32}); the archive never overwrites a file"
            )
        return StoredFile(rel_path, sums.size, sums.adler32, sums.md5, reused=True)

    def store(
        self,
        src: Path,
        rel_path: str,
        expected_adler32: str | None = None,
        expected_size: int | None = None,
    ) -> StoredFile:
        """Copy ``src`` into the archive at ``rel_path``, verifying its adler32 while copying.

        The copy is verified against ``expected_adler32`` / ``expected_size`` (the manifest's)
        before it is published; a destination already holding identical bytes is reused.
        Equivalent to :meth:`stage` followed by :meth:`commit`.

        Raises:
            ChecksumMismatch, SizeMismatch: the bytes read differ from the manifest (nothing
                is written).
            ArchiveConflict: ``rel_path`` exists with different content.
            ArchiveWriteError: writing failed (e.g. disk full); the temporary file is removed.
            InvalidArchivePath: bad ``rel_path``.
            OSError: ``src`` cannot be read.
        """
        staged = self.stage(src, rel_path, expected_adler32, expected_size)
        return staged if isinstance(staged, StoredFile) else self.commit(staged)

    def stage(
        self,
        src: Path,
        rel_path: str,
        expected_adler32: str | None = None,
        expected_size: int | None = None,
    ) -> StoredFile | StagedFile:
        """First half of :meth:`store`: copy ``src`` to a temporary file beside ``rel_path``
        and verify it, without fsync. :meth:`commit` makes it durable and publishes it, so a
        caller can copy the next file while the previous one is flushed to disk.

        Returns:
            A :class:`StagedFile` to commit, or the reused :class:`StoredFile` when the
            destination already holds identical bytes.

        Raises:
            As :meth:`store`.
        """
        dest = self.abspath(rel_path)
        expected = normalise_adler32(expected_adler32) if expected_adler32 is not None else None
        if dest.exists():
            sums = file_checksums(Path(src), self.chunk_size, md5=False)
            self._check(rel_path, sums, expected, expected_size)
            return self._reuse_existing(dest, rel_path, sums)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveWriteError(rel_path, exc) from exc
        tmp = self._tmp_path(dest)

        def write(fd: int, data: memoryview) -> int:
            try:
                return self._write(fd, data)
            except OSError as exc:
                raise ArchiveWriteError(rel_path, exc) from exc

        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            except OSError as exc:
                raise ArchiveWriteError(rel_path, exc) from exc
            try:
                sums = copy_with_adler32(Path(src), fd, write=write, chunk_size=self.chunk_size)
            finally:
                os.close(fd)
            self._check(rel_path, sums, expected, expected_size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StagedFile(rel_path, tmp, sums)

    def commit(self, staged: StagedFile) -> StoredFile:
        """Second half of :meth:`store`: fsync the staged file and publish it atomically.

        Raises:
            ArchiveConflict: the destination appeared meanwhile with different content.
            ArchiveWriteError: the flush failed (the temporary file is removed).
        """
        try:
            fd = os.open(staged.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            staged.tmp.unlink(missing_ok=True)
            raise ArchiveWriteError(staged.path, exc) from exc
        return self._publish(staged.tmp, self.abspath(staged.path), staged.path, staged.sums)

    def discard(self, staged: StagedFile) -> None:
        """Remove a staged file that will not be committed."""
        staged.tmp.unlink(missing_ok=True)

    @staticmethod
    def _check(rel: str, sums: Checksums, adler: str | None, size: int | None) -> None:
        if size is not None and sums.size != size:
            raise SizeMismatch(rel, size, sums.size)
        if adler is not None and sums.adler32 != adler:
            raise ChecksumMismatch(rel, adler, sums.adler32)

    def write_product(self, rel_path: str, write: Callable[[Path], None]) -> StoredFile:
        """Write a new file through ``write(tmp_path)`` and publish it atomically at ``rel_path``.

        ``write`` must create the file at the path it is given (which does not exist yet and
        keeps the final file's name as suffix, so ``.fits`` / ``.fits.fz`` are recognised).
        The file is then checksummed, fsynced and linked into place.

        Raises:
            ArchiveConflict: ``rel_path`` exists with different content.
            ArchiveWriteError: the writer failed with an OSError (e.g. disk full) or did not
                create the file; nothing is left behind.
            Any exception of ``write`` itself, after the temporary file is removed.
        """
        dest = self.abspath(rel_path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveWriteError(rel_path, exc) from exc
        tmp = self._tmp_path(dest)
        try:
            try:
                write(tmp)
            except OSError as exc:
                raise ArchiveWriteError(rel_path, exc) from exc
            if not tmp.is_file():
                raise ArchiveWriteError(
                    rel_path, OSError(errno.ENOENT, "the writer did not create the file")
                )
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o444)
            sums = file_checksums(tmp, self.chunk_size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._publish(tmp, dest, rel_path, sums)

    # -- quarantine -----------------------------------------------------------------------

    def quarantine(
        self,
        src_path: Path,
        obs_set: str,
        reason: str,
        *,
        stamp: str | None = None,
        move: bool = False,
    ) -> Path:
        """Keep a rejected input file under ``quarantine/<stamp>_<obs_set>/`` with a reason file.

        ``stamp`` defaults to the current UTC time (``YYYYmmddTHHMMSSZ``); pass one per run to
        group a run's rejects. A file already quarantined for this obs set with identical
        bytes is not copied again (re-runs stay idempotent); its reason file is kept. With
        ``move`` the source is removed after the copy is safely in place (default: copy, the
        observatory buffer is freed by the operator). When ``src_path`` does not exist only
        the reason file is written (a listed-but-missing file).

        Returns:
            Path of the quarantined copy (or of the reason file when there is no source).

        Raises:
            ArchiveWriteError: the quarantine cannot be written.
        """
        src_path = Path(src_path)
        name = src_path.name
        sums = file_checksums(src_path, self.chunk_size) if src_path.is_file() else None
        qroot = self.root / "quarantine"
        if qroot.is_dir():
            for d in sorted(qroot.glob(f"*_{glob.escape(obs_set)}")):
                old = d / name
                if sums is not None and old.is_file():
                    if file_checksums(old, self.chunk_size) == sums:
                        return old
                elif sums is None and (d / f"{name}.reason.txt").is_file():
                    return d / f"{name}.reason.txt"
        stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        rel_dir = f"quarantine/{stamp}_{obs_set}"
        text = (
            f"file: {src_path}\nobs_set: {obs_set}\n"
            f"quarantined: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
            f"reason: {reason}\n"
        )
        if sums is not None:
            text += f"size: {sums.size}\nadler32: {sums.adler32}\nmd5: {sums.md5}\n"
        reason_rel = f"{rel_dir}/{name}.reason.txt"
        with contextlib.suppress(ArchiveConflict):
            self.write_product(reason_rel, lambda p: p.write_text(text))
        if sums is None:
            return self.abspath(reason_rel)
        stored = self.store(src_path, f"{rel_dir}/{name}", expected_adler32=sums.adler32)
        if move:
            src_path.unlink()
        return self.abspath(stored.path)

    # -- maintenance ----------------------------------------------------------------------

    def temporaries(self, rel_dir: str = "", *, max_age_s: float = 86400.0) -> list[Temporary]:
        """Temporary files of unfinished writes under ``rel_dir`` (the whole archive by default).

        A temporary file is stale when its writer (host, pid in its name) is this host and the
        pid no longer runs, or it was written on another host and is older than ``max_age_s``:
        a writer killed between creating it and publishing the file (seen after pilots were
        SIGKILLed mid-write). Live writers' files are listed as not stale.
        """
        base = self.abspath(rel_dir) if rel_dir else self.root
        if not base.is_dir():
            return []
        now = time.time()
        found: list[Temporary] = []
        for path in base.rglob(f"{TMP_PREFIX}*"):
            m = _TMP_RE.match(path.name)
            if not m or not path.is_file():
                continue
            if m["host"] == _HOST:
                stale = not _pid_alive(int(m["pid"]))
            else:
                try:
                    stale = now - path.stat().st_mtime > max_age_s
                except FileNotFoundError:
                    continue
            rel = path.relative_to(self.root).as_posix()
            found.append(Temporary(rel, m["host"], int(m["pid"]), stale))
        return sorted(found, key=lambda t: t.path)

    def clean_temporaries(self, rel_dir: str = "", *, max_age_s: float = 86400.0) -> list[Path]:
        """Remove the stale :meth:`temporaries` under ``rel_dir``; live writers' files are left
        alone, so this is safe while other writers run.

        Returns:
            The removed paths (absolute).
        """
        removed: list[Path] = []
        for temporary in self.temporaries(rel_dir, max_age_s=max_age_s):
            if temporary.stale:
                path = self.abspath(temporary.path)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        return removed

    def verify_file(
        self, rel_path: str, size: int, adler32: str, md5: str | None = None
    ) -> tuple[str | None, Checksums | None]:
        """Re-read one archived file and compare it with its recorded size and checksums.

        The md5 is compared only when one is recorded; it is computed in any case, so that a
        caller can record it for a file that matches its adler32.

        Returns:
            (problem, checksums read): problem ``None`` when the file matches, ``"missing"``
            when it is gone (checksums None), ``"corrupt"`` otherwise.
        """
        path = self.abspath(rel_path)
        try:
            sums = file_checksums(path, self.chunk_size)
        except FileNotFoundError:
            return "missing", None
        if sums.size != size or sums.adler32 != adler32 or (md5 and sums.md5 != md5):
            return "corrupt", sums
        return None, sums
