"""Errors raised by the archive; all are :class:`surveydm.errors.SurveydmError` so the CLI shows
them as one line."""

from __future__ import annotations

from surveydm.errors import SurveydmError


class ArchiveError(SurveydmError):
    """Base class of archive errors."""


class InvalidArchivePath(ArchiveError):
    """A relative archive path is absolute, empty or climbs out of the archive root."""


class ChecksumMismatch(ArchiveError):
    """The bytes read do not have the checksum the manifest (or the registry) gives."""

    def __init__(self, path: str, expected: str, actual: str, algorithm: str = "adler32"):
        self.path, self.expected, self.actual, self.algorithm = path, expected, actual, algorithm
        super().__init__(f"{path}: {algorithm} is {actual}, expected {expected}")


class SizeMismatch(ArchiveError):
    """The file does not have the size the manifest (or the registry) gives."""

    def __init__(self, path: str, expected: int, actual: int):
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(f"{path}: size is {actual} bytes, expected {expected}")


class ArchiveConflict(ArchiveError):
    """The destination already holds a different file: the archive never overwrites."""


class ArchiveWriteError(ArchiveError):
    """Writing into the archive failed (disk full, I/O error); nothing was left behind."""

    def __init__(self, path: str, cause: OSError):
        self.path, self.errno = path, cause.errno
        super().__init__(f"cannot write {path} into the archive: {cause.strerror or cause}")
