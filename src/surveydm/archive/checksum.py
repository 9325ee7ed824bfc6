"""adler32 and md5 computed while a file is streamed.

adler32 is the checksum the observatory's data acquisition writes in the manifest (PAUdm, seed
000 section 3); md5 is the one Pan-STARRS' summit copy checks (seed 004 section 3.1) and a
stronger guard for long-term verification.

The transfer verifies adler32 *while* copying (:func:`copy_with_adler32`): the checksum runs
in a helper thread on one chunk (``zlib`` releases the GIL) while the calling thread writes it
and reads the next, so the verified copy costs little more than a plain one. md5 runs at about
half a plain copy's speed on one core (~530 MiB/s measured here), so it is not on that path:
it is computed when the archived file is next read in full (registration, or
``archive verify``), by :func:`file_checksums`, where its update overlaps adler32 and the reads.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: Bytes read per chunk: large enough to make per-call overhead negligible, small enough that
#: the chunk is still in the CPU cache when adler32, md5 and the write read it again.
CHUNK_SIZE = 1024 * 1024


def format_adler32(value: int) -> str:
    """An adler32 value as 8 lowercase hex digits (the manifest format)."""
    return f"{value & 0xFFFFFFFF:08x}"


def normalise_adler32(text: str | int) -> str:
    """Parse a manifest adler32 (hex string, optionally ``0x``-prefixed, or an int).

    Raises:
        ValueError: not a 32-bit hexadecimal number.
    """
    if isinstance(text, int):
        if not 0 <= text <= 0xFFFFFFFF:
            raise ValueError(f"adler32 out of range: {text}")
        return format_adler32(text)
    s = str(text).strip().lower().removeprefix("0x")
    if not 1 <= len(s) <= 8 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError(f"not an adler32 checksum (8 hex digits): {text!r}")
    return s.rjust(8, "0")


@dataclass(frozen=True)
class Checksums:
    """Size (bytes), adler32 (8 hex) and md5 (32 hex, None when not computed) of a byte
    stream."""

    size: int
    adler32: str
    md5: str | None = None


class StreamHasher:
    """Incremental adler32 (and md5) with one of them overlapped in a worker thread.

    With ``md5`` the worker computes md5 and the caller adler32; without, the worker computes
    adler32 and the caller is free to write the chunk meanwhile. Use as a context manager;
    call :meth:`update` with successive chunks and :meth:`result` at the end. The worker may
    still be reading a chunk after :meth:`update` returns: the caller must not modify it
    before the *next* :meth:`update` call returns (alternating two buffers, as
    :func:`iter_chunks` does, satisfies this).
    """

    def __init__(self, *, md5: bool = True) -> None:
        self._adler = 1
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._size = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksum")
        self._pending: Future[None] | None = None

    def __enter__(self) -> StreamHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def _update_adler(self, chunk: bytes | memoryview) -> None:
        self._adler = zlib.adler32(chunk, self._adler)

    def update(self, chunk: bytes | memoryview) -> None:
        """Add ``chunk``; the worker's part may still run when this returns."""
        if self._pending is not None:
            self._pending.result()
        if self._md5 is None:
            self._pending = self._pool.submit(self._update_adler, chunk)
        else:
            self._pending = self._pool.submit(self._md5.update, chunk)
            self._update_adler(chunk)
        self._size += len(chunk)

    def result(self) -> Checksums:
        """Checksums of everything passed to :meth:`update`."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        md5 = self._md5.hexdigest() if self._md5 is not None else None
        return Checksums(self._size, format_adler32(self._adler), md5)


def iter_chunks(path: Path, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Successive chunks of a file, read (unbuffered) into two alternating buffers.

    A yielded view stays valid until the next-but-one chunk is read, which is what
    :class:`StreamHasher` needs; reusing buffers avoids allocating and page-faulting fresh
    memory for every chunk. Raises OSError.
    """
    buffers = (bytearray(chunk_size), bytearray(chunk_size))
    with open(path, "rb", buffering=0) as f:
        k = 0
        while n := f.readinto(buffers[k]):
            yield memoryview(buffers[k])[:n]
            k ^= 1


def file_checksums(path: Path, chunk_size: int = CHUNK_SIZE, *, md5: bool = True) -> Checksums:
    """Size, adler32 and (with ``md5``) md5 of the file at ``path`` in one read.

    Raises OSError."""
    with StreamHasher(md5=md5) as hasher:
        for chunk in iter_chunks(path, chunk_size):
            hasher.update(chunk)
        return hasher.result()


def copy_with_adler32(
    src: Path,
    dst_fd: int,
    *,
    write: Callable[[int, memoryview], int],
    chunk_size: int = CHUNK_SIZE,
) -> Checksums:
    """Copy ``src`` to the open descriptor ``dst_fd`` and adler32 the bytes in the same pass.

    ``write`` is the write layer (``os.write`` in production; tests inject one that fails).

    Returns:
        Size and adler32 of the bytes copied (``md5`` None: see the module docstring).

    Raises:
        OSError: reading ``src`` or writing fails (e.g. ENOSPC); the caller cleans up.
    """
    with StreamHasher(md5=False) as hasher:
        for chunk in iter_chunks(src, chunk_size):
            hasher.update(chunk)
            view = chunk
            while view:
                n = write(dst_fd, view)
                view = view[n:]
        return hasher.result()
