"""Reading config files without trusting them: regular files only, bounded, UTF-8.

A FIFO would block the reader forever, `/dev/zero` would fill memory, a
symlink could point anywhere, and a file others can write is not the admin's.
"""

from __future__ import annotations

import errno
import os
import stat

from translators.errors import HpvmError

MAX_CONFIG_BYTES = 1024 * 1024


class UnsafeFile(HpvmError):
    """A file refused before (or instead of) being read; bad input (exit status 2)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_config(
    path: os.PathLike | str, trusted: bool = True, limit: int = MAX_CONFIG_BYTES
) -> str:
    """The text of a config file (`read_config_bytes`), UTF-8 without NUL."""
    name = os.fsdecode(path)
    data = read_config_bytes(path, trusted, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"byte 0x{data[err.start]:02x} at offset {err.start}"
        raise UnsafeFile(name, f"not UTF-8 text ({where})") from None
    if "\0" in text:
        raise UnsafeFile(name, f"not text (NUL byte at offset {text.index(chr(0))})")
    return text


def read_config_bytes(
    path: os.PathLike | str, trusted: bool = True, limit: int = MAX_CONFIG_BYTES
) -> bytes:
    """The bytes of a config file.

    Always: a regular file (opened without blocking, so a FIFO or a device is refused
    before any read), at most `limit` bytes, UTF-8 without NUL. `trusted` (the agent's
    guests directory) adds: not a symlink, owned by root, not writable by group/others.
    """
    name = os.fsdecode(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if trusted:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if trusted and err.errno == errno.ELOOP:  # the last component is a symlink
            raise UnsafeFile(name, "is a symbolic link (not followed)") from None
        raise UnsafeFile(name, f"cannot read: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(name, f"not a regular file ({_kind(info.st_mode)})")
        if trusted and info.st_uid != 0:
            raise UnsafeFile(name, f"owned by uid {info.st_uid}, not root")
        if trusted and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeFile(name, f"writable by group or others (mode {info.st_mode & 0o7777:o})")
        if info.st_size > limit:
            raise UnsafeFile(name, f"larger than {limit} bytes ({info.st_size})")
        data = _read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnsafeFile(name, f"larger than {limit} bytes")
    return data


def _read_at_most(fd: int, size: int) -> bytes:
    chunks, total = [], 0
    while total < size:
        try:
            chunk = os.read(fd, size - total)
        except BlockingIOError:  # cannot happen for a regular file; never spin on one
            break
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"


def write_atomic(path: os.PathLike | str, text: str, mode: int = 0o644) -> None:
    """Replace a file's content at once: a temporary file beside it, fsynced, renamed over it.

    A reader sees the old content or the new one, never a part; a crash leaves one of them.
    """
    name = os.fsdecode(path)
    directory = os.path.dirname(name) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    temporary = f"{name}.tmp.{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(temporary, flags, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask (the agent's unit has 0077)
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temporary, name)
    except OSError:
        os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
