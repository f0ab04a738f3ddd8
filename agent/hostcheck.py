"""Is a backing store safe to give to a guest? Checks against the running host."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from translators.errors import HpvmError
from translators.model import StorageDevice, StorageType
from translators.validate import statement_of

BLOCK_STORAGE = (StorageType.DISK, StorageType.LV)


def device_number(path: str) -> int | None:
    """st_rdev of a block device (symlinks followed), else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


def backing_key(path: str) -> str:
    """An identity for a backing store: block devices by number, files by inode, else the path.

    `/dev/disk/by-id/...`, `/dev/mapper/...` and `/dev/sdb` of one device share a key.
    """
    try:
        st = os.stat(path)
    except OSError:
        return os.path.normpath(path)
    if stat.S_ISBLK(st.st_mode):
        return f"blk:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f"file:{st.st_dev}:{st.st_ino}"


def _sysfs_dir(rdev: int) -> Path:
    return Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}").resolve()


def _family(rdev: int) -> list[Path]:
    """The device's sysfs dir, its partitions, and (for a partition) the whole disk."""
    base = _sysfs_dir(rdev)
    found = [base]
    found += [p for p in base.iterdir() if (p / "partition").exists()] if base.exists() else []
    if (base / "partition").exists():
        found.append(base.parent)
    return found


def _numbers(dirs: list[Path]) -> set[str]:
    numbers = set()
    for d in dirs:
        try:
            numbers.add((d / "dev").read_text().strip())
        except OSError:
            pass
    return numbers


def _mounted_numbers() -> set[str]:
    numbers = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        numbers.add(line.split()[2])
    return numbers


def _swap_numbers() -> set[str]:
    numbers = set()
    for line in Path("/proc/swaps").read_text().splitlines()[1:]:
        number = device_number(line.split()[0])
        if number is not None:
            numbers.add(f"{os.major(number)}:{os.minor(number)}")
    return numbers


def host_use(path: str) -> str | None:
    """Why the host itself uses this block device (mounted, swap, holders), or None."""
    rdev = device_number(path)
    if rdev is None:
        return None
    family = _family(rdev)
    numbers = _numbers(family)
    if numbers & _mounted_numbers():
        return "is mounted on the host (or a partition of it is)"
    if numbers & _swap_numbers():
        return "is in use as swap on the host"
    for d in family:
        holders = d / "holders"
        if holders.exists() and any(holders.iterdir()):
            names = ", ".join(sorted(h.name for h in holders.iterdir()))
            return f"is held by {names} on the host (LVM, RAID or multipath)"
    root = os.stat("/").st_dev
    if f"{os.major(root)}:{os.minor(root)}" in numbers:
        return "holds the host's root file system"
    return None


def check_backing(dev: StorageDevice) -> None:
    """A backing store must exist, be of the right kind and not be used by the host."""
    if dev.storage is StorageType.NULL:
        return
    stmt = statement_of(dev)
    try:
        st = os.stat(dev.location)
    except FileNotFoundError:
        raise HpvmError(f"backing store {dev.location} does not exist", stmt) from None
    except OSError as err:
        raise HpvmError(f"cannot use backing store {dev.location}: {err.strerror}", stmt) from None
    if dev.storage in BLOCK_STORAGE and not stat.S_ISBLK(st.st_mode):
        raise HpvmError(
            f"{dev.location} is not a block device ('{dev.storage}' storage needs one; "
            "use 'file' for an image file)",
            stmt,
        )
    if dev.storage is StorageType.FILE and not stat.S_ISREG(st.st_mode):
        raise HpvmError(f"{dev.location} is not a regular file ('file' storage)", stmt)
    reason = host_use(dev.location)
    if reason:
        raise HpvmError(f"{dev.location} {reason}", stmt)
