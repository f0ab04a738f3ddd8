"""Rules a guest must satisfy, checked before anything touches the host.

Every check raises `HpvmError` naming the offending statement; nothing is
changed by a check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from translators import limits
from translators.errors import HpvmError
from translators.grammar import dashed_mac, format_statement
from translators.model import (
    Adapter,
    Device,
    DeviceType,
    Guest,
    NetworkDevice,
    StorageDevice,
    StorageType,
)

GUEST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: Returns the size in bytes of a backing store, or None when it does not exist.
SizeProbe = Callable[[str], int | None]


#: Separates a disk's identity from its partition's in a backing key (`WHOLE#MAJ:MIN`).
PART = "#"


def same_storage(a: str, b: str) -> bool:
    """Do two backing keys name overlapping storage: the same, or a disk and its partition?

    Keys come from `HostClaims.key`: the host layer makes one device (or file)
    under any name one key, and a partition's key its disk's key + `PART` + its own.
    """
    if a == b:
        return True
    if not a.startswith(("blk:", "file:")) or not b.startswith(("blk:", "file:")):
        return False
    return a.startswith(b + PART) or b.startswith(a + PART)


def statement_of(device: Device) -> str:
    """The statement to quote in a message: as typed, else the canonical form."""
    return device.text or device.requested or format_statement(device)


@dataclass
class HostClaims:
    """What other guests and the host already use (filled by the host layer)."""

    macs: dict[str, str] = field(default_factory=dict)  # mac -> owner ("guest g", "host eth0")
    backings: dict[str, str] = field(default_factory=dict)  # backing key -> guest
    ports: dict[str, dict[int, str]] = field(default_factory=dict)  # vswitch -> port -> guest
    #: Maps a backing path to the identity `backings` is keyed by (the host
    #: layer passes one that makes /dev/disk/by-id/... and /dev/sdb equal).
    key: Callable[[str], str] = field(default=os.path.normpath)
    local_vswitches: set[str] = field(default_factory=set)  # no uplink: VIO lan only


def check_device(device: Device) -> None:
    """Rules for one statement on its own."""
    if isinstance(device, StorageDevice):
        _check_storage(device)
    else:
        _check_network(device)


def _check_range(value: int | None, allowed: range, what: str, statement: str) -> None:
    if value is not None and value not in allowed:
        raise HpvmError(
            f"{what} {value} out of range {allowed.start}-{allowed.stop - 1}", statement
        )


def _check_storage(dev: StorageDevice) -> None:
    stmt = statement_of(dev)
    if dev.adapter is Adapter.AVIO_STOR:
        if dev.device not in (DeviceType.DISK, DeviceType.DVD):
            raise HpvmError(
                f"device type '{dev.device}' is not supported with avio_stor (disk and dvd only)",
                stmt,
            )
        if dev.storage is StorageType.ATTACH:
            raise HpvmError("'attach' backing is not supported with avio_stor", stmt)
    elif dev.device in (DeviceType.TAPE, DeviceType.CHANGER, DeviceType.BURNER) or (
        dev.storage is StorageType.ATTACH
    ):
        raise HpvmError("SCSI pass-through (tape, changer, burner, attach) is not supported", stmt)
    if dev.storage is StorageType.NULL and dev.device is not DeviceType.DVD:
        raise HpvmError("'null' storage is only for dvd devices", stmt)
    if dev.device is DeviceType.DVD and dev.storage is StorageType.LV:
        raise HpvmError("a dvd is backed by 'disk', 'file' or 'null', not 'lv'", stmt)
    _check_range(dev.bus, limits.PCI_BUSES[dev.adapter], "PCI bus", stmt)
    _check_range(dev.slot, limits.PCI_SLOTS, "PCI slot", stmt)
    what = "target" if dev.adapter is Adapter.AVIO_STOR else "target (emulated LSI SCSI id)"
    _check_range(dev.target, limits.TARGETS[dev.adapter], what, stmt)


def _check_network(dev: NetworkDevice) -> None:
    stmt = statement_of(dev)
    if dev.adapter is Adapter.AVIO_LAN and dev.vswitch == limits.LOCALNET:
        raise HpvmError("avio_lan needs a vswitch with a physical uplink, not localnet", stmt)
    _check_range(dev.bus, limits.PCI_BUSES[dev.adapter], "PCI bus", stmt)
    _check_range(dev.slot, limits.PCI_SLOTS, "PCI slot", stmt)
    _check_range(dev.portid, limits.PORT_IDS, "port id", stmt)
    if dev.mac is not None:
        check_mac(dev.mac, stmt)


def check_mac(mac: str, statement: str) -> None:
    """A guest MAC: locally administered, unicast, not all zeros."""
    first = int(mac[:2], 16)
    if int(mac.replace(":", ""), 16) == 0:
        raise HpvmError("MAC address 00-00-00-00-00-00 is not allowed", statement)
    if first & 0x01:
        raise HpvmError(f"MAC {dashed_mac(mac)} is a multicast address", statement)
    if not first & 0x02:
        raise HpvmError(
            f"MAC {dashed_mac(mac)} is not locally administered (bit 0x02 of the first octet)",
            statement,
        )


def check_guest(guest: Guest, claims: HostClaims | None = None) -> None:
    """Rules for a whole guest: every statement, limits, duplicates and conflicts."""
    if not GUEST_NAME.fullmatch(guest.name):
        raise HpvmError(
            f"bad guest name '{guest.name}' (letters, digits, '_', '.', '-'; at most 64)"
        )
    if guest.vcpus not in limits.VCPUS:
        raise HpvmError(f"vcpus {guest.vcpus} out of range 1-{limits.VCPUS.stop - 1}")
    if guest.memory_mb < limits.MIN_MEMORY_MB:
        raise HpvmError(f"memory {guest.memory_mb} MB is below {limits.MIN_MEMORY_MB} MB")
    if guest.memory_mb > limits.MAX_MEMORY_MB:
        raise HpvmError(
            f"memory {guest.memory_mb} MB is more than libvirt's limit of {limits.MAX_MEMORY_MB} MB"
        )
    for device in guest.devices:
        check_device(device)
    _check_counts(guest)
    _check_addresses(guest)
    claims = claims or HostClaims()
    check_backings(guest, claims)
    _check_macs(guest, claims)
    _check_ports(guest, claims)
    for nic in guest.networks:
        if nic.adapter is Adapter.AVIO_LAN and nic.vswitch in claims.local_vswitches:
            raise HpvmError(
                f"vswitch {nic.vswitch} has no uplink (like localnet): avio_lan needs one",
                statement_of(nic),
            )


def _check_counts(guest: Guest) -> None:
    avio = vio = 0
    for device in guest.devices:
        if device.adapter.is_avio:
            avio += 1
            if avio > limits.MAX_AVIO_DEVICES:
                raise HpvmError(
                    f"more than {limits.MAX_AVIO_DEVICES} AVIO devices in guest",
                    statement_of(device),
                )
        else:
            vio += 1
            if vio > limits.MAX_VIO_DEVICES:
                raise HpvmError(
                    f"more than {limits.MAX_VIO_DEVICES} VIO devices in guest", statement_of(device)
                )


def slot_kind(device: Device) -> str:
    """What a PCI slot holds: one HBA per adapter type, or exactly one NIC."""
    return str(device.adapter) if isinstance(device, StorageDevice) else "network"


def _check_addresses(guest: Guest) -> None:
    slots: dict[tuple[int, int], Device] = {}
    targets: dict[tuple[int, int, int], StorageDevice] = {}
    for device in guest.devices:
        if device.bus is None or device.slot is None:
            continue
        key = (device.bus, device.slot)
        other = slots.get(key)
        if other is not None and (
            slot_kind(other) != slot_kind(device) or slot_kind(device) == "network"
        ):
            raise HpvmError(
                f"PCI bus {key[0]} slot {key[1]} is already used by '{statement_of(other)}'",
                statement_of(device),
            )
        slots[key] = device
        if isinstance(device, StorageDevice) and device.target is not None:
            tkey = (*key, device.target)
            if tkey in targets:
                raise HpvmError(
                    f"address {tkey[0]},{tkey[1]},{tkey[2]} is already used by "
                    f"'{statement_of(targets[tkey])}'",
                    statement_of(device),
                )
            targets[tkey] = device


def check_backings(guest: Guest, claims: HostClaims) -> None:
    """One storage (under any name, or a disk and its partition) backs one device."""
    seen: list[tuple[str, StorageDevice]] = []
    for dev in guest.storage:
        if dev.storage is StorageType.NULL:
            continue
        key = claims.key(dev.location)
        for other_key, other in seen:
            if same_storage(key, other_key):
                raise HpvmError(
                    f"backing store {dev.location} is already used in this guest by "
                    f"'{statement_of(other)}'" + _alias_note(dev.location, other.location),
                    statement_of(dev),
                )
        seen.append((key, dev))
        for other_key, owner in claims.backings.items():
            if owner != guest.name and same_storage(key, other_key):
                raise HpvmError(
                    f"backing store {dev.location} is already used by guest '{owner}'",
                    statement_of(dev),
                )


def _alias_note(location: str, other: str) -> str:
    return "" if location == other else f" (the same storage as {other}, or overlapping it)"


def _check_macs(guest: Guest, claims: HostClaims) -> None:
    seen: dict[str, NetworkDevice] = {}
    for dev in guest.networks:
        if dev.mac is None:
            continue
        if dev.mac in seen:
            raise HpvmError(
                f"MAC {dashed_mac(dev.mac)} is already used by '{statement_of(seen[dev.mac])}'",
                statement_of(dev),
            )
        seen[dev.mac] = dev
        owner = claims.macs.get(dev.mac)
        if owner is not None and owner != f"guest {guest.name}":
            raise HpvmError(
                f"MAC {dashed_mac(dev.mac)} is already used by {owner}", statement_of(dev)
            )


def _check_ports(guest: Guest, claims: HostClaims) -> None:
    """A vswitch port belongs to one NIC of one guest."""
    seen: dict[tuple[str, int], NetworkDevice] = {}
    for nic in guest.networks:
        if nic.portid is None:
            continue
        key = (nic.vswitch, nic.portid)
        if key in seen:
            raise HpvmError(
                f"port {nic.portid} of vswitch {nic.vswitch} is already used by "
                f"'{statement_of(seen[key])}'",
                statement_of(nic),
            )
        seen[key] = nic
        owner = claims.ports.get(nic.vswitch, {}).get(nic.portid)
        if owner is not None and owner != guest.name:
            raise HpvmError(
                f"port {nic.portid} of vswitch {nic.vswitch} belongs to guest '{owner}'",
                statement_of(nic),
            )


def check_sizes(guest: Guest, probe: SizeProbe) -> None:
    """Disks need at least 512 bytes of backing, DVD media 2048 (when the backing exists)."""
    for dev in guest.storage:
        if dev.storage is StorageType.NULL:
            continue
        size = probe(dev.location)
        if size is None:
            continue
        minimum = limits.MIN_DVD_BYTES if dev.device is DeviceType.DVD else limits.MIN_DISK_BYTES
        if size < minimum:
            raise HpvmError(
                f"backing store {dev.location} has {size} bytes, a {dev.device} needs at least "
                f"{minimum}",
                statement_of(dev),
            )
