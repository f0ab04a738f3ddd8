"""Plan an `hpvmmodify`: the device changes between a guest and what the user asked.

Pure: takes the guest's model and the parsed statements, returns the new model
and an ordered list of changes for the host layer to apply.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from translators.allocate import complete
from translators.errors import HpvmError
from translators.model import Adapter, Device, DeviceType, Guest, NetworkDevice, StorageDevice
from translators.validate import HostClaims, check_device, check_guest, statement_of


class Action(StrEnum):
    ATTACH = "attach"
    DETACH = "detach"
    UPDATE = "update"  # change in place: DVD media, NIC's vswitch


@dataclass
class Change:
    action: Action
    device: Device  # the device as it will be (attach/update) or as it was (detach)
    new_controller: bool = False  # attach the device's HBA first


def matches(statement: Device, device: Device, key: Callable[[str], str] | None = None) -> bool:
    """Does a `-d` statement name this device? Every field it gives must agree.

    Locations compare by `key` (the host's identity of a backing store) when given.
    """
    if type(statement) is not type(device) or statement.adapter is not device.adapter:
        return False
    if isinstance(statement, StorageDevice):
        assert isinstance(device, StorageDevice)
        fields = ["device", "bus", "slot", "target", "storage"]
        if statement.location and statement.location != device.location:
            if key is None or not device.location:
                return False
            if key(statement.location) != key(device.location):
                return False
    else:
        fields = ["vswitch", "bus", "slot", "mac", "portid"]
    return all(
        getattr(statement, f) is None or getattr(statement, f) == getattr(device, f) for f in fields
    )


def _find(guest: Guest, statement: Device, key: Callable[[str], str] | None = None) -> Device:
    found = [d for d in guest.devices if matches(statement, d, key)]
    if not found:
        raise HpvmError(f"guest {guest.name} has no such device", statement_of(statement))
    if len(found) > 1:
        raise HpvmError(
            f"matches {len(found)} devices of guest {guest.name}; give its address",
            statement_of(statement),
        )
    return found[0]


def _remove(guest: Guest, device: Device) -> None:
    if isinstance(device, StorageDevice):
        guest.storage = [d for d in guest.storage if d is not device]
    else:
        guest.networks = [n for n in guest.networks if n is not device]


def _hbas(guest: Guest) -> set[tuple[Adapter, int | None, int | None]]:
    return {(d.adapter, d.bus, d.slot) for d in guest.storage}


def _modified(guest: Guest, statement: Device) -> tuple[Device, Device, Action]:
    """(old, new, how) for a `-m` statement, keyed by its address."""
    if isinstance(statement, StorageDevice):
        if statement.bus is None or statement.slot is None or statement.target is None:
            raise HpvmError("-m needs the device's bus,slot,target", statement_of(statement))
        key = lambda d: (d.bus, d.slot, d.target)  # noqa: E731
        candidates = [d for d in guest.storage if key(d) == key(statement)]
    else:
        if statement.bus is None or statement.slot is None:
            raise HpvmError("-m needs the NIC's bus,slot", statement_of(statement))
        candidates = [
            n for n in guest.networks if (n.bus, n.slot) == (statement.bus, statement.slot)
        ]
    if not candidates:
        raise HpvmError(
            f"guest {guest.name} has no device at that address", statement_of(statement)
        )
    old = candidates[0]
    if old.adapter is not statement.adapter:
        raise HpvmError("changing the adapter type is not supported", statement_of(statement))
    if isinstance(statement, StorageDevice):
        assert isinstance(old, StorageDevice)
        if statement.device is not old.device:
            raise HpvmError(
                f"the device at that address is a {old.device}", statement_of(statement)
            )
        new: Device = replace(
            old,
            storage=statement.storage,
            location=statement.location,
            requested=statement.requested,
            text=statement.text,
        )
        how = Action.UPDATE if old.device is DeviceType.DVD else Action.ATTACH
    else:
        assert isinstance(old, NetworkDevice)
        new = replace(
            old,
            vswitch=statement.vswitch,
            requested=statement.requested,
            text=statement.text,
            mac=statement.mac or old.mac,
            portid=statement.portid if statement.portid is not None else None,
        )
        how = Action.UPDATE if new.mac == old.mac else Action.ATTACH
    return old, new, how


def plan_modify(
    guest: Guest,
    add: list[Device],
    delete: list[Device],
    modify: list[Device],
    claims: HostClaims | None = None,
) -> tuple[Guest, list[Change]]:
    """The new guest and the changes that turn `guest` into it, validated."""
    for statement in [*add, *delete, *modify]:
        if statement in delete:
            continue
        check_device(statement)
    new = copy.deepcopy(guest)
    changes: list[Change] = []
    for statement in delete:
        device = _find(new, statement, claims.key if claims else None)
        _remove(new, device)
        changes.append(Change(Action.DETACH, device))
    replaced: list[tuple[Device, Device, Action]] = []
    for statement in modify:
        old, changed, how = _modified(new, statement)
        index = (new.storage if isinstance(old, StorageDevice) else new.networks).index(old)
        if isinstance(old, StorageDevice):
            new.storage[index] = changed  # type: ignore[assignment]
        else:
            new.networks[index] = changed  # type: ignore[assignment]
        replaced.append((old, changed, how))
    for statement in add:
        (new.storage if isinstance(statement, StorageDevice) else new.networks).append(statement)
    check_guest(new, claims)
    existing_hbas = _hbas(guest)
    done = complete(new, claims)
    for old, changed, how in replaced:
        index = (new.storage if isinstance(old, StorageDevice) else new.networks).index(changed)
        final = (done.storage if isinstance(old, StorageDevice) else done.networks)[index]
        if how is Action.ATTACH:
            changes += [Change(Action.DETACH, old), Change(Action.ATTACH, final)]
        else:
            changes.append(Change(Action.UPDATE, final))
    added_storage = done.storage[
        len(done.storage) - sum(isinstance(a, StorageDevice) for a in add) :
    ]
    added_nics = done.networks[
        len(done.networks) - sum(isinstance(a, NetworkDevice) for a in add) :
    ]
    for device in [*added_storage, *added_nics]:
        hba = (device.adapter, device.bus, device.slot)
        fresh = isinstance(device, StorageDevice) and hba not in existing_hbas
        existing_hbas.add(hba)
        changes.append(Change(Action.ATTACH, device, new_controller=fresh))
    return done, changes
