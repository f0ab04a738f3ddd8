"""Storage checked again just before it reaches a running guest.

A definition was checked when it was made, but by the time its guest starts,
or one of its devices comes back, `/dev/sdX` may name another disk (renumbered
after a reboot) or the host may have mounted it meanwhile. Every path that
hands a backing store to a running guest calls one of these first:
`hpvmstart`, the libvirt hook's `prepare` (autostart, `virsh start`; it cannot
call libvirt, so it reads the other guests from libvirt's files) and the
agent's re-plug of a returning device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.storage.hostcheck import backing_key, check_backing, one_look
from translators.devices.scsi_passthrough import ScsiPassthroughDevice
from translators.model import Adapter, DeviceType, Guest, StorageDevice, StorageType
from translators.readback import read_saved_domain
from translators.validate import HostClaims, check_backings

if TYPE_CHECKING:  # the hook imports this module and must not need libvirt
    import libvirt

    from agent.guests.inventory import HostView

#: The device kinds whose devices claim host storage.
CLAIMING_KINDS = (StorageDevice, ScsiPassthroughDevice)

#: Where libvirt keeps its qemu domains: definitions, and the running ones' status.
DOMAIN_DIRS = (Path("/etc/libvirt/qemu"), Path("/run/libvirt/qemu"))


def check_storage_now(
    guest: Guest, others: HostClaims, only: Sequence[StorageDevice] | None = None
) -> None:
    """`guest`'s backing stores (or those in `only`) may reach it now: each exists, is of
    its kind, is not used by the host, and no storage is named twice, nor by another guest.

    Raises `HpvmError` naming the statement.
    """
    with one_look():
        for dev in guest.storage if only is None else only:
            check_backing(dev)
    check_backings(guest, others)


def check_start(host: HostView, guest: Guest) -> None:
    """Before `hpvmstart` starts a guest: its definition's storage, checked now."""
    check_storage_now(guest, host.claims(exclude=guest.name))


def check_attached_start(host: HostView, guest: Guest) -> list[tuple[str, str]]:
    """Before `hpvmstart`: its attached SCSI devices, checked now; (old XML, new XML) of
    those that came back at another address."""
    return check_attached_now(guest, host.claims(exclude=guest.name))


def check_attached_now(guest: Guest, others: HostClaims) -> list[tuple[str, str]]:
    """Each attached device is there, is the one the guest was given, and is free."""
    from agent.devices import scsi
    from translators.render import device_xml

    moved = []
    for dev in scsi.attached(guest):
        before = device_xml(dev) if dev.host else None
        scsi.check_now(dev, others)
        if before is not None and device_xml(dev) != before:
            moved.append((before, device_xml(dev)))
    return moved


def check_replug(conn: libvirt.virConnect, dom: libvirt.virDomain, location: str) -> None:
    """Before the agent plugs a returning block device back into a running guest."""
    from agent.guests.inventory import HostView, config_guest

    guest = config_guest(dom)
    devices = [d for d in guest.storage if d.location == location]
    if not devices:  # not in the definition any more: checked as a plain disk
        devices = [StorageDevice(DeviceType.DISK, Adapter.AVIO_STOR, StorageType.DISK, location)]
    check_storage_now(guest, HostView(conn).claims(exclude=guest.name), only=devices)


def read_claiming_guest(path: str) -> Guest | None:
    """The storage of the guest in one of libvirt's files; None when it holds none we read."""
    try:
        with open(path, "rb") as f:
            return read_saved_domain(f.read(), CLAIMING_KINDS)
    except (OSError, ValueError, KeyError):
        return None  # libvirt's own files: not ours to judge


def domain_files(directory: Path) -> list[str]:
    """The `*.xml` files in one of libvirt's directories, in name order."""
    try:
        with os.scandir(directory) as entries:
            return sorted(e.path for e in entries if e.name.endswith(".xml"))
    except OSError:
        return []


def claims_from_files(
    directories: Iterable[Path],
    exclude: str,
    read: Callable[[str], Guest | None] = read_claiming_guest,
) -> HostClaims:
    """What other guests' storage is, from the files libvirt keeps (for the hook).

    Only the storage kinds are read (`read`: the agent passes one that keeps what it
    read while the file is unchanged), and each location's identity is worked out
    now, once (a running guest is in both directories).
    """
    from agent.devices.database import shared_keys

    found = HostClaims(key=backing_key, shared=shared_keys())
    keys: dict[str, str] = {}
    for directory in directories:
        for path in domain_files(directory):
            guest = read(path)
            if guest is None or guest.name == exclude:
                continue
            for dev in guest.storage:
                if dev.storage is not StorageType.NULL:
                    key = keys.get(dev.location)
                    if key is None:
                        key = keys[dev.location] = backing_key(dev.location)
                    found.add_backing(key, guest.name, dev.adapter)
            if guest.of_kind(ScsiPassthroughDevice):
                from agent.devices import scsi

                scsi.add_claims(found, guest)
    return found
