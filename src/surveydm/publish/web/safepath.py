"""Turning a path stored in the registry into a file the portal may serve: only files inside the
archive root, after resolving ``..`` and symbolic links."""

from __future__ import annotations

from pathlib import Path

from surveydm.archive import Archive, InvalidArchivePath
from surveydm.errors import SurveydmError


class ForbiddenPath(SurveydmError):
    """A path that is not a regular file inside the archive root (HTTP 404: never revealed)."""

    http_status = 404


def safe_archive_path(archive_root: Path, rel_path: str) -> Path:
    """Absolute path of the archive file ``rel_path``, guaranteed to lie inside ``archive_root``.

    The relative path must be a clean archive path (no absolute path, no ``..``:
    :meth:`surveydm.archive.Archive.abspath`), and the fully resolved path (symbolic links
    followed) must be a regular file under the resolved root (``Path.is_relative_to``).

    Raises:
        ForbiddenPath: any of those conditions fails (the message does not say which, so
            nothing about files outside the archive leaks).
    """
    root = Path(archive_root).resolve()
    try:
        candidate = Archive(root).abspath(rel_path)
    except InvalidArchivePath:
        raise ForbiddenPath(f"no such archive file: {rel_path!r}") from None
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ForbiddenPath(f"no such archive file: {rel_path!r}") from None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise ForbiddenPath(f"no such archive file: {rel_path!r}")
    return resolved
