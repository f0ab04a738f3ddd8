"""The device database (`hpvmdevmgmt`) on the host: where it lives, identities, checks.

Kept where libvirt keeps host state, `/var/lib/libvirt/avio-kvm/devices.json`
(`$AVIO_STATE_DIR` overrides the directory), as text (`translators.devdb.dump`),
replaced atomically under a lock. Entries match devices by identity, never by
name: block and character devices by device number (a loop device by its
file), files by inode, NICs and PCI functions by their PCI address. Disks also
keep a stable id (`/dev/disk/by-id/wwn-...`, else another by-id name or the
WWID), so a device number that names another disk after a reboot is noticed.

The first command (or the agent) that finds no database makes it, restricting
what the host itself uses (HPVM's `hpvmhostrdev`, attribute `AUTORDEV=YES`):
root and boot disks, mounted devices, swap, LVM physical volumes, RAID and
multipath members (`agent.storage.hostcheck.host_devices`) and the management
NIC (`agent.network.netlink.management_nics`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.errors import HostError
from agent.safefile import UnsafeFile, read_config, write_atomic
from agent.storage.hostcheck import backing_key, host_devices
from translators import devdb
from translators.devdb import GDEV, RDEV, Entry
from translators.errors import HpvmError

STATE_ENV = "AVIO_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/libvirt/avio-kvm"
FILE_NAME = "devices.json"
LOCK_NAME = "devices.lock"
PCI_ADDRESS = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)


def db_path() -> Path:
    return state_dir() / FILE_NAME


@dataclass
class Identity:
    """What a device or file is, whatever it is called."""

    key: str
    devtype: str
    stable_id: str = ""


def stable_id(rdev: int) -> str:
    """A disk's name that survives renumbering: its /dev/disk/by-id name (WWN first),
    else its WWID from sysfs; "" when it has none (a loop device is known by its file)."""
    names = []
    for link in Path("/dev/disk/by-id").glob("*"):
        try:
            if os.stat(link).st_rdev == rdev:
                names.append(link.name)
        except OSError:
            continue
    if names:
        names.sort(key=lambda n: (not n.startswith("wwn-"), n))
        return f"/dev/disk/by-id/{names[0]}"
    sysfs = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    for wwid in (sysfs / "wwid", sysfs / "device" / "wwid"):
        with contextlib.suppress(OSError):
            text = wwid.read_text().strip()
            if text:
                return f"wwid:{text}"
    return ""


def _pci_of(real: str) -> str | None:
    """The PCI function at or above a sysfs device path (a virtio NIC sits under one)."""
    path = Path(real)
    while str(path).startswith("/sys/devices/"):
        if PCI_ADDRESS.fullmatch(path.name):
            return path.name
        path = path.parent
    return None


def identify(location: str) -> Identity | None:
    """The identity of a host device, file, NIC (`/sys/class/net/NAME`) or PCI function
    (`/sys/bus/pci/devices/ADDR`); None when there is no such thing now."""
    if location.startswith("/sys/class/net/"):
        name = location[len("/sys/class/net/") :].strip("/")
        if not name or "/" in name or name in (".", "..") or not os.path.exists(location):
            return None
        pci = _pci_of(os.path.realpath(f"/sys/class/net/{name}/device"))
        return Identity(f"pci:{pci}" if pci else f"net:{name}", "NIC")
    if location.startswith("/sys/"):
        pci = _pci_of(os.path.realpath(location))
        if pci and os.path.exists(location):
            return Identity(f"pci:{pci}", "PCI")
    try:
        st = os.stat(location)
    except (OSError, ValueError):
        return None
    key = backing_key(location)
    if stat.S_ISBLK(st.st_mode):
        return Identity(key, "DISK", "" if key.startswith("file:") else stable_id(st.st_rdev))
    if stat.S_ISCHR(st.st_mode):
        return Identity(key, "CHAR")
    return Identity(key, "DIR" if stat.S_ISDIR(st.st_mode) else "FILE")


class Database:
    """The entries, read once."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    def restricting(self, ident: Identity) -> Entry | None:
        """The rdev entry that keeps this device (or one overlapping it) from guests."""
        return next(
            (e for e in self.entries if e.config == RDEV and e.matches(ident.key, ident.stable_id)),
            None,
        )

    def find(self, ident: Identity, config: str | None = None) -> Entry | None:
        """The entry of exactly this device (not a partition of it), of `config` if given."""
        for e in self.entries:
            if config and e.config != config:
                continue
            if e.stable_id and ident.stable_id:
                if e.stable_id == ident.stable_id:
                    return e
                continue
            if e.key == ident.key:
                return e
        return None

    def shared_keys(self) -> set[str]:
        """Identities of the guest devices marked SHARE=YES."""
        return {e.key for e in self.entries if e.shared}


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    directory = state_dir()
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read() -> Database | None:
    path = db_path()
    if not os.path.lexists(path):
        return None
    try:
        return Database(devdb.load(read_config(path)))
    except UnsafeFile as err:
        raise HostError(f"device database {path}: {err.reason}") from None
    except ValueError as err:
        message = f"device database {path} is not valid ({err}): repair or remove it"
        raise HostError(message) from None


def _save(db: Database) -> None:
    write_atomic(db_path(), devdb.dump(db.entries))


def host_entries() -> list[Entry]:
    """The rdev entries of what the host itself uses now (`hpvmhostrdev`), AUTORDEV=YES."""
    found: list[Entry] = []
    named = [(path, "") for path, _ in host_devices()]
    try:
        from agent.network.netlink import management_nics

        named += [(f"/sys/class/net/{name}", "") for name, _ in management_nics()]
    except (HostError, OSError, ImportError):
        pass  # no netlink here: the NICs are left to the admin
    keys: set[str] = set()
    for path, _ in named:
        ident = identify(path)
        if ident is None or ident.key in keys:
            continue
        keys.add(ident.key)
        found.append(
            Entry(RDEV, path, ident.key, ident.devtype, ident.stable_id, {"AUTORDEV": "YES"})
        )
    return found


def load() -> Database:
    """The database; at first use, made with the host's own devices restricted.

    Where it cannot be written (a read-only state directory), the first-use
    entries still apply to this caller.
    """
    db = _read()
    if db is not None:
        return db
    try:
        with _locked():
            db = _read()
            if db is None:
                db = Database(host_entries())
                _save(db)
    except OSError:
        db = Database(host_entries())
    return db


@contextlib.contextmanager
def editing() -> Iterator[Database]:
    """The database, for a change: locked, read (or made), written back when the block ends
    without an error."""
    with _locked():
        db = _read()
        if db is None:
            db = Database(host_entries())
        yield db
        _save(db)


def check_allowed(location: str, statement: str | None = None) -> None:
    """Refuse (`HpvmError`, one line) a host device or file the database restricts.

    The one check every path that hands a host device to a guest calls
    (through `agent.storage.hostcheck.check_backing`).
    """
    ident = identify(location)
    if ident is None:
        return
    entry = load().restricting(ident)
    if entry is None:
        return
    why = "restricted by the host at first use" if entry.attrs.get("AUTORDEV") else "restricted"
    same = "" if entry.path == location else f" as {entry.path}"
    raise HpvmError(
        f"{location} is {why}{same} in the device database "
        f"(hpvmdevmgmt -d rdev:{entry.path} lifts it)",
        statement,
    )


def shared_keys() -> set[str]:
    """Identities of the devices marked SHARE=YES (for `HostClaims.shareable`)."""
    return load().shared_keys()


__all__ = [
    "GDEV",
    "RDEV",
    "Database",
    "Identity",
    "check_allowed",
    "db_path",
    "editing",
    "identify",
    "load",
    "shared_keys",
]
