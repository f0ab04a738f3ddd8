"""Is a backing store safe to give to a guest? Checks against the running host.

Mounts are found by the block devices behind them: the device number in
mountinfo when it is a real one, the mount's source (btrfs, and others, show an
anonymous `0:NN` device), every device of a mounted btrfs
(`/sys/fs/btrfs/*/devices/`, which also shows btrfs mounted in other mount
namespaces) and, through `slaves/`, the disks under a mapped device.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from translators.errors import HpvmError
from translators.model import StorageDevice, StorageType
from translators.validate import PART, statement_of

BLOCK_STORAGE = (StorageType.DISK, StorageType.LV)

#: Host directories whose files never back a guest disk (checked on the real path).
SYSTEM_DIRS = (
    "/etc",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",  # and /lib32, /lib64, /libx32: any top directory named lib*
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/lib/systemd",
    "/var/lib/libvirt/qemu",  # NVRAM, managed saves
    "/var/backups",
    "/var/log",
    "/var/spool",
)


def device_number(path: str) -> int | None:
    """st_rdev of a block device (symlinks followed), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


def _number(rdev: int) -> str:
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _sysfs_dir(rdev: int) -> Path:
    return Path(f"/sys/dev/block/{_number(rdev)}").resolve()


def _read(path: str | Path) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _loop_file(block_dir: str | Path) -> str | None:
    """The file behind a loop device (its sysfs dir), if it is one and the file still exists."""
    name = _read(f"{block_dir}/loop/backing_file")
    if not name or name.endswith(" (deleted)"):
        return None
    return name


def _file_key(st: os.stat_result) -> str:
    return f"file:{st.st_dev}:{st.st_ino}"


def _block_key(rdev: int) -> str:
    """A whole disk by number, a partition as `WHOLE#PART`; a loop device is its file.

    Plain os calls on /sys/dev/block/M:m (no path resolution for a whole disk): the
    libvirt hook computes this for every other guest's disk at each guest start.
    """
    number = _number(rdev)
    base = f"/sys/dev/block/{number}"
    partition = os.path.exists(f"{base}/partition")
    if partition:
        whole = os.path.dirname(os.path.realpath(base))
        whole_key = f"blk:{_read(f'{whole}/dev') or number}"
    else:
        whole, whole_key = base, f"blk:{number}"
    backing = _loop_file(whole)
    if backing:
        try:
            whole_key = _file_key(os.stat(backing))
        except OSError:
            pass
    return f"{whole_key}{PART}{number}" if partition else whole_key


def backing_key(path: str) -> str:
    """An identity for a backing store: block devices by number, files by inode, else the path.

    `/dev/disk/by-id/...`, `/dev/mapper/...` and `/dev/sdb` of one device share a key;
    so do a file, a symlink to it and the loop device over it. A partition's key
    extends its disk's (`translators.validate.same_storage`).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return os.path.normpath(path)
    if stat.S_ISBLK(st.st_mode):
        return _block_key(st.st_rdev)
    if stat.S_ISCHR(st.st_mode):
        return f"chr:{_number(st.st_rdev)}"
    return _file_key(st)


def _family(rdev: int) -> list[Path]:
    """The device's sysfs dir, its partitions, and (for a partition) the whole disk."""
    base = _sysfs_dir(rdev)
    found = [base]
    try:  # a partition's directory is named after its disk: sda1, nvme0n1p1, loop0p1
        with os.scandir(base) as entries:
            found += [
                Path(e.path)
                for e in entries
                if e.name.startswith(base.name)
                and e.is_dir(follow_symlinks=False)
                and os.path.exists(os.path.join(e.path, "partition"))
            ]
    except OSError:
        pass
    if os.path.exists(base / "partition"):
        found.append(base.parent)
    return found


def _numbers(dirs: list[Path]) -> set[str]:
    return {n for n in (_read(d / "dev") for d in dirs) if n}


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def _mounts() -> list[tuple[str, str, str]]:
    """(device number, mount point, source) of each mount this process sees."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        try:
            source = fields[fields.index("-", 6) + 2]
        except (ValueError, IndexError):
            continue
        found.append((fields[2], _unescape(fields[4]), _unescape(source)))
    return found


def _source_number(source: str) -> str | None:
    if not source.startswith("/"):
        return None  # proc, tmpfs, overlay, ...
    rdev = device_number(source)
    return _number(rdev) if rdev is not None else None


def _btrfs_filesystems() -> list[set[str]]:
    """The device numbers of each mounted btrfs (sysfs lists them, in any mount namespace)."""
    found = []
    for fs in Path("/sys/fs/btrfs").glob("*/devices"):
        found.append(_numbers(list(fs.iterdir())))
    return found


def _with_slaves(numbers: set[str]) -> set[str]:
    """Add the devices under mapped ones (device-mapper, RAID), recursively."""
    todo, seen = list(numbers), set(numbers)
    while todo:
        for slave in Path(f"/sys/dev/block/{todo.pop()}/slaves").glob("*"):
            number = _read(slave / "dev")
            if number and number not in seen:
                seen.add(number)
                todo.append(number)
    return seen


def _real(number: str) -> bool:
    return not number.startswith("0:")


def mounted_devices() -> set[str]:
    """Device numbers ("MAJ:MIN") of every block device behind a mounted file system."""
    numbers = set()
    for device, _, source in _mounts():
        if _real(device):
            numbers.add(device)
        number = _source_number(source)
        if number:
            numbers.add(number)
    for fs in _btrfs_filesystems():
        numbers |= fs
    return _with_slaves(numbers)


def filesystem_devices(path: str) -> set[str]:
    """Device numbers of the block devices behind the file system that holds `path`.

    The mount is found by its mount point (btrfs gives files another anonymous
    `st_dev` than the one mountinfo shows).
    """
    real = os.path.realpath(path)
    device = _number(os.stat(real).st_dev)
    numbers = {device} if _real(device) else set()
    best: tuple[str, str, str] | None = None
    for mount in _mounts():
        point = mount[1]
        inside = point == "/" or real == point or real.startswith(point + "/")
        if inside and (best is None or len(point) >= len(best[1])):
            best = mount  # the longest mount point; the last one mounted over it
    if best is not None:
        if _real(best[0]):
            numbers.add(best[0])
        found = _source_number(best[2])
        if found:
            numbers.add(found)
    for fs in _btrfs_filesystems():
        if fs & numbers:
            numbers |= fs
    return _with_slaves(numbers)


def _swap_entries() -> list[str]:
    try:
        lines = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return []
    return [_unescape(line.split()[0]) for line in lines if line.split()]


def _swap_numbers() -> set[str]:
    numbers = set()
    for name in _swap_entries():
        number = device_number(name)
        if number is not None:
            numbers.add(_number(number))
    return numbers


_look = threading.local()


@contextmanager
def one_look() -> Iterator[None]:
    """Within it, what the host as a whole uses (its root file system, mounts, swap) is
    read once: a check of a guest's ten disks reads /proc/self/mountinfo once, not 20x."""
    if getattr(_look, "facts", None) is not None:
        yield
        return
    _look.facts = {}
    try:
        yield
    finally:
        _look.facts = None


def _host_wide(compute: Callable[[], set[str]]) -> set[str]:
    facts = getattr(_look, "facts", None)
    if facts is None:
        return compute()
    if compute not in facts:
        facts[compute] = compute()
    return facts[compute]


def _root_devices() -> set[str]:
    return filesystem_devices("/")


def host_use(path: str) -> str | None:
    """Why the host itself uses this block device (mounted, swap, holders), or None."""
    rdev = device_number(path)
    if rdev is None:
        return None
    family = _family(rdev)
    numbers = _numbers(family) | {_number(rdev)}
    if numbers & _host_wide(_root_devices):
        return "holds the host's root file system"
    if numbers & _host_wide(mounted_devices):
        return "is mounted on the host (or a partition of it is)"
    if numbers & _host_wide(_swap_numbers):
        return "is in use as swap on the host"
    for d in family:
        holders = d / "holders"
        if holders.exists() and any(holders.iterdir()):
            names = ", ".join(sorted(h.name for h in holders.iterdir()))
            return f"is held by {names} on the host (LVM, RAID or multipath)"
    whole = family[0].parent if (family[0] / "partition").exists() else family[0]
    loop_file = _loop_file(whole)
    where = system_path(loop_file) if loop_file else None
    if where:
        return f"is a loop device over {loop_file}, in the host's system directory {where}"
    return None


def _devname(number: str) -> str | None:
    """/dev/NAME of the block device numbered "MAJ:MIN" (from its uevent), or None."""
    for line in (_read(Path(f"/sys/dev/block/{number}/uevent")) or "").splitlines():
        if line.startswith("DEVNAME="):
            return "/dev/" + line[len("DEVNAME=") :]
    return None


def _whole(number: str) -> str:
    """The whole disk's number of a partition, else the number itself."""
    base = Path(f"/sys/dev/block/{number}").resolve()
    if (base / "partition").exists():
        return _read(base.parent / "dev") or number
    return number


def _udev_property(number: str, name: str) -> str | None:
    """A property udev recorded for the block device (its database in /run/udev/data)."""
    try:
        text = Path(f"/run/udev/data/b{number}").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"E:{name}="):
            return line[len(name) + 3 :]
    return None


#: File system signatures of devices that belong to a volume manager (inactive ones too).
MEMBER_SIGNATURES = {
    "LVM2_member": "an LVM physical volume",
    "linux_raid_member": "a RAID member",
}


def host_devices() -> list[tuple[str, str]]:
    """(path, why) of every block device and file the host itself uses now: the root and
    boot disks, mounted devices, swap, LVM physical volumes and RAID/multipath members.

    What `hpvmhostrdev` restricts; `host_use` asks the same of one device.
    """
    found: dict[str, str] = {}

    def add(number: str, why: str) -> None:
        name = _devname(number) if _real(number) else None
        if name and name not in found:
            found[name] = why

    for point, what in (("/", "root"), ("/boot", "boot"), ("/boot/efi", "boot")):
        if os.path.isdir(point):
            for number in sorted(filesystem_devices(point)):
                add(_whole(number), f"the host's {what} disk")
                add(number, f"holds the host's {what} file system")
    for number in sorted(mounted_devices()):
        add(number, "mounted on the host")
    for name in _swap_entries():
        rdev = device_number(name)
        if rdev is not None:
            add(_number(rdev), "swap on the host")
        elif os.path.isfile(name):
            found.setdefault(name, "swap on the host")
    for block in sorted(Path("/sys/class/block").iterdir()):
        number = _read(block / "dev")
        if not number:
            continue
        holders = block / "holders"
        if holders.exists() and any(holders.iterdir()):
            add(number, "held by " + ", ".join(sorted(h.name for h in holders.iterdir())))
        signature = _udev_property(number, "ID_FS_TYPE")
        if signature in MEMBER_SIGNATURES:
            add(number, MEMBER_SIGNATURES[signature])
    return sorted(found.items())


def system_path(path: str) -> str | None:
    """The host system directory that holds `path` (symlinks resolved), or None."""
    real = os.path.realpath(path)
    top = real.split("/")[1] if real.count("/") >= 1 else ""
    if top.startswith("lib"):
        return f"/{top}"
    for directory in SYSTEM_DIRS:
        if real == directory or real.startswith(directory + "/"):
            return directory
    return None


def _loop_devices() -> list[tuple[str, str]]:
    """(/dev/loopN, backing file) of every bound loop device."""
    found = []
    for block in Path("/sys/block").glob("loop*"):
        backing = _loop_file(block)
        if backing:
            found.append((f"/dev/{block.name}", backing))
    return found


def file_use(path: str) -> str | None:
    """Why the host itself uses this file (system file, swap, behind a busy loop), or None."""
    where = system_path(path)
    if where:
        return f"is in the host's system directory {where}"
    try:
        st = os.stat(path)
    except OSError:
        return None
    me = (st.st_dev, st.st_ino)
    for name in _swap_entries():
        try:
            swap = os.stat(name)
        except OSError:
            continue
        if (swap.st_dev, swap.st_ino) == me:
            return "is in use as swap on the host"
    for loop, backing in _loop_devices():
        try:
            other = os.stat(backing)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) != me:
            continue
        reason = host_use(loop)
        if reason:
            return f"backs {loop}, which {reason}"
    return None


def check_host_device(location: str, statement: str | None = None) -> None:
    """Checks every kind makes of a host device it hands a guest: the device database's
    restrictions (`hpvmdevmgmt -a rdev:`). Raises `HpvmError` naming the statement."""
    from agent.devices.database import check_allowed  # it imports this module

    check_allowed(location, statement)


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
    except ValueError:
        raise HpvmError("a backing store path cannot contain a NUL character", stmt) from None
    if dev.storage in BLOCK_STORAGE and not stat.S_ISBLK(st.st_mode):
        raise HpvmError(
            f"{dev.location} is not a block device ('{dev.storage}' storage needs one; "
            "use 'file' for an image file)",
            stmt,
        )
    if dev.storage is StorageType.FILE and not stat.S_ISREG(st.st_mode):
        raise HpvmError(f"{dev.location} is not a regular file ('file' storage)", stmt)
    check_host_device(dev.location, stmt)
    use = file_use if dev.storage is StorageType.FILE else host_use
    reason = use(dev.location)
    if reason:
        raise HpvmError(f"{dev.location} {reason}", stmt)
