"""Copy one backing store to another (hpvmclone -b), sparse-aware, then check the copy.

A file destination is created (never overwritten) and keeps the source's
holes: runs of zeros are not written. A block-device destination gets every
byte (its old contents must not show through). The copy is read back and
compared (SHA-256) before the caller uses it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable

from agent.errors import HostError

CHUNK = 4 << 20
ZEROS = bytes(CHUNK)
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def _size(fd: int) -> int:
    st = os.fstat(fd)
    return os.lseek(fd, 0, os.SEEK_END) if stat.S_ISBLK(st.st_mode) else st.st_size


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """Where a file has data ([start, end) ranges); all of it where holes are not known."""
    ranges = []
    offset = 0
    try:
        while offset < size:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            ranges.append((start, min(end, size)))
            offset = end
    except OSError as err:
        if err.errno == errno.ENXIO:  # no data after offset
            return ranges
        return [(0, size)]
    return ranges


def copy_backing(source: str, destination: str, progress: Progress | None = None) -> dict:
    """Copy `source` to `destination`; returns {bytes, seconds, written, digest}."""
    start = time.monotonic()
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = _size(src)
        to_block = os.path.exists(destination) and stat.S_ISBLK(os.stat(destination).st_mode)
        if to_block:  # every byte: the device's old contents must not show through
            ranges = [(0, size)]
            dst = os.open(destination, os.O_WRONLY | os.O_CLOEXEC)
        else:
            sparse = stat.S_ISREG(os.fstat(src).st_mode)
            ranges = _data_ranges(src, size) if sparse else [(0, size)]
            try:
                dst = os.open(
                    destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                )
            except FileExistsError:
                raise HostError(f"{destination} exists: hpvmclone never overwrites") from None
        written = 0
        source_hash = hashlib.sha256()
        try:
            if to_block and _size(dst) < size:
                raise HostError(f"{destination} is smaller than {source} ({size} bytes)")
            if not to_block:
                os.ftruncate(dst, size)
            for begin, end in ranges:  # holes (between ranges) are zeros in both: not read
                offset = begin
                while offset < end:
                    data = os.pread(src, min(CHUNK, end - offset), offset)
                    if not data:
                        raise HostError(f"{source} ended early, at byte {offset}")
                    source_hash.update(data)
                    zeros = data == ZEROS if len(data) == CHUNK else not data.strip(b"\0")
                    if to_block or not zeros:
                        os.pwrite(dst, data, offset)
                        written += len(data)
                    offset += len(data)
                    if progress:
                        progress(offset, size)
            os.fsync(dst)
            copy_hash = _digest(destination, ranges)
            if copy_hash != source_hash.hexdigest():
                raise HostError(f"the copy {destination} differs from {source}: not used")
        except BaseException:
            if not to_block:  # the file this call made, half-written or wrong: removed
                os.unlink(destination)
            raise
        finally:
            os.close(dst)
    finally:
        os.close(src)
    if progress:
        progress(size, size)
    return {
        "bytes": size,
        "seconds": time.monotonic() - start,
        "written": written,
        "digest": copy_hash,
    }


def _digest(path: str, ranges: list[tuple[int, int]]) -> str:
    """SHA-256 of these byte ranges of a file or device (a new file is zeros elsewhere)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for begin, end in ranges:
            offset = begin
            while offset < end:
                data = os.pread(fd, min(CHUNK, end - offset), offset)
                if not data:
                    return "short"
                digest.update(data)
                offset += len(data)
    finally:
        os.close(fd)
    return digest.hexdigest()
