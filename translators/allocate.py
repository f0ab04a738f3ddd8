"""Fill in what a statement may omit: PCI bus/slot, SCSI target, MAC, vswitch port.

Deterministic: the same guest (and the same claims of other guests) always
gets the same addresses, so output is reproducible and golden-testable.
Devices with explicit addresses keep them; the rest are placed in statement
order, storage first (HPVM puts the boot disk's HBA in the lowest slot).
"""

from __future__ import annotations

import copy
import hashlib
from itertools import count

from translators import limits
from translators.errors import HpvmError
from translators.model import Adapter, Guest, NetworkDevice, StorageDevice
from translators.validate import HostClaims, slot_kind, statement_of

Slot = tuple[int, int]


class _Layout:
    """The PCI slots and SCSI targets taken so far in one guest."""

    def __init__(self, guest: Guest) -> None:
        self.slots: dict[Slot, str] = {}
        self.targets: dict[Slot, set[int]] = {}
        for device in guest.devices:
            if device.bus is not None and device.slot is not None:
                self.slots[(device.bus, device.slot)] = slot_kind(device)
                if isinstance(device, StorageDevice) and device.target is not None:
                    self.targets.setdefault((device.bus, device.slot), set()).add(device.target)

    def free_slot(self, adapter: Adapter, bus: int | None, slot: int | None) -> Slot | None:
        buses = [bus] if bus is not None else list(limits.PCI_BUSES[adapter])
        slots = [slot] if slot is not None else list(limits.PCI_SLOTS)
        for b in buses:
            for s in slots:
                if (b, s) not in self.slots:
                    return (b, s)
        return None

    def free_target(self, hba: Slot, adapter: Adapter, wanted: int | None) -> int | None:
        used = self.targets.get(hba, set())
        if wanted is not None:
            return None if wanted in used else wanted
        return next((t for t in limits.TARGETS[adapter] if t not in used), None)

    def hbas(self, adapter: Adapter) -> list[Slot]:
        return sorted(k for k, kind in self.slots.items() if kind == str(adapter))


def complete(guest: Guest, claims: HostClaims | None = None) -> Guest:
    """A copy of `guest` with every omitted address, MAC and port id filled in."""
    claims = claims or HostClaims()
    done = copy.deepcopy(guest)
    layout = _Layout(done)
    for dev in done.storage:
        if not dev.addressed:
            _place_storage(dev, layout)
    for index, nic in enumerate(done.networks):
        if nic.bus is None or nic.slot is None:
            _place_nic(nic, layout)
        if nic.mac is None:
            nic.mac = _new_mac(done, index, claims)
    for nic in done.networks:
        if nic.portid is None:
            nic.portid = _new_port(done, nic, claims)
    return done


def _place_storage(dev: StorageDevice, layout: _Layout) -> None:
    if dev.bus is not None and dev.slot is not None:
        candidates = [(dev.bus, dev.slot)]
    else:
        candidates = [
            hba
            for hba in layout.hbas(dev.adapter)
            if (dev.bus is None or hba[0] == dev.bus) and (dev.slot is None or hba[1] == dev.slot)
        ]
    for hba in candidates:
        target = layout.free_target(hba, dev.adapter, dev.target)
        if target is not None:
            break
    else:
        new = layout.free_slot(dev.adapter, dev.bus, dev.slot)
        if new is None or (dev.bus is not None and dev.slot is not None):
            raise HpvmError("no free target or PCI slot left for", statement_of(dev))
        hba, target = new, layout.free_target(new, dev.adapter, dev.target)
        layout.slots[hba] = str(dev.adapter)
    assert target is not None
    dev.bus, dev.slot, dev.target = hba[0], hba[1], target
    layout.targets.setdefault(hba, set()).add(target)


def _place_nic(nic: NetworkDevice, layout: _Layout) -> None:
    new = layout.free_slot(nic.adapter, nic.bus, nic.slot)
    if new is None:
        raise HpvmError("no free PCI slot left for", statement_of(nic))
    layout.slots[new] = "network"
    nic.bus, nic.slot = new


def _new_mac(guest: Guest, index: int, claims: HostClaims) -> str:
    """A locally administered unicast MAC derived from the guest name and NIC position."""
    taken = set(claims.macs) | {n.mac for n in guest.networks if n.mac}
    for attempt in count():
        digest = bytearray(hashlib.sha256(f"{guest.name}/{index}/{attempt}".encode()).digest()[:6])
        digest[0] = (digest[0] & 0xFC) | 0x02
        mac = ":".join(f"{b:02x}" for b in digest)
        if mac not in taken:
            return mac
    raise AssertionError("unreachable")


def _new_port(guest: Guest, nic: NetworkDevice, claims: HostClaims) -> int:
    """The lowest port id >= 1 on the NIC's vswitch that no other port uses."""
    taken = {p for p, owner in claims.ports.get(nic.vswitch, {}).items() if owner != guest.name}
    taken |= {n.portid for n in guest.networks if n.vswitch == nic.vswitch and n.portid is not None}
    for port in limits.PORT_IDS:
        if port >= 1 and port not in taken:
            return port
    raise HpvmError(f"no free port left on vswitch {nic.vswitch}", statement_of(nic))
