"""Rules a guest must satisfy, checked before anything touches the host.

Every check raises `HpvmError` naming the offending statement; nothing is
changed by a check. Guest-wide rules (name, sizes, counts, PCI slots) are
here; each kind checks its own statements and its part of the guest
(`Device.check`, `check_slot_mates`, `check_guest`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from translators import limits
from translators.devices import registry
from translators.devices.base import statement_of
from translators.devices.network import check_mac
from translators.devices.storage import PART, SizeProbe, check_backings, check_sizes, same_storage
from translators.errors import HpvmError
from translators.model import Device, Guest

__all__ = [
    "PART",
    "HostClaims",
    "SizeProbe",
    "check_backings",
    "check_device",
    "check_guest",
    "check_mac",
    "check_sizes",
    "same_storage",
    "statement_of",
]

GUEST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


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
    #: backing key -> the adapters (avio_stor, scsi) other guests use it through
    backing_adapters: dict[str, set[str]] = field(default_factory=dict)
    #: keys the device database marks SHARE=YES (`hpvmdevmgmt -m gdev:X:attr:SHARE=YES`)
    shared: set[str] = field(default_factory=set)
    #: Host PCI function (DDDD:BB:DD.F) -> the guest it is given to (DIO).
    functions: dict[str, str] = field(default_factory=dict)
    #: Attached (pass-through) host devices by identity -> the guest that has it.
    attached: dict[str, str] = field(default_factory=dict)

    def add_backing(self, key: str, guest: str, adapter: str) -> None:
        """A guest's backing store (by key) and the adapter it uses it through."""
        self.backings[key] = guest
        self.backing_adapters.setdefault(key, set()).add(str(adapter))


def check_device(device: Device) -> None:
    """Rules for one statement on its own."""
    registry.kind_of(device).check(device)


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
    devices = guest.devices
    for device in devices:
        check_device(device)
    _check_counts(devices)
    _check_slots(devices)
    claims = claims or HostClaims()
    for kind in registry.KINDS:
        kind.check_guest(guest.of_kind(kind), guest, claims)


def _check_counts(devices: list[Device]) -> None:
    avio = vio = 0
    for device in devices:
        if device.is_avio:
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


def _check_slots(devices: list[Device]) -> None:
    """A PCI slot holds one device, or one kind's devices that share it (an HBA's)."""
    slots: dict[tuple[int, int], list[Device]] = {}
    for device in devices:
        if device.bus is None or device.slot is None:
            continue
        key = (device.bus, device.slot)
        mates = slots.setdefault(key, [])
        if mates and (mates[-1].slot_kind != device.slot_kind or not device.SHARES_SLOT):
            raise HpvmError(
                f"PCI bus {key[0]} slot {key[1]} is already used by '{statement_of(mates[-1])}'",
                statement_of(device),
            )
        device.check_slot_mates(mates)
        mates.append(device)
