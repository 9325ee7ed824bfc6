"""The file archive: organised layout, checksums, atomic never-overwriting writes, quarantine
and re-verification of files (seed 000 section 4; seed 003 "raw data is sacred").

>>> from surveydm.archive import Archive
>>> archive = Archive(settings.archive_root)
>>> stored = archive.store(buffer / "f.fits", archive.raw_path("2026-11-20", "20261120_001",
...                        "f.fits"), expected_adler32="1a2b3c4d")

The archive knows nothing about the registry; recording files (``archive_file``) and checking
them against their records (:func:`surveydm.pipelines.transfer.verify_archive`) is done by the
pipelines.
"""

from surveydm.archive.checksum import (
    CHUNK_SIZE,
    Checksums,
    copy_with_adler32,
    file_checksums,
    format_adler32,
    normalise_adler32,
)
from surveydm.archive.errors import (
    ArchiveConflict,
    ArchiveError,
    ArchiveWriteError,
    ChecksumMismatch,
    InvalidArchivePath,
    SizeMismatch,
)
from surveydm.archive.store import (
    Archive,
    RawPath,
    StagedFile,
    StoredFile,
    Temporary,
    WriteFunc,
)

__all__ = [
    "CHUNK_SIZE",
    "Archive",
    "ArchiveConflict",
    "ArchiveError",
    "ArchiveWriteError",
    "ChecksumMismatch",
    "Checksums",
    "InvalidArchivePath",
    "SizeMismatch",
    "RawPath",
    "StagedFile",
    "StoredFile",
    "Temporary",
    "WriteFunc",
    "copy_with_adler32",
    "file_checksums",
    "format_adler32",
    "normalise_adler32",
]
