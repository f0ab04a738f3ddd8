"""hpvmclone's plan (pure): a copy of a guest's configuration under a new name.

The clone gets new MACs and vswitch ports (allocated when it is defined), its
own VM number and UUID; `-d` leaves devices out, `-a` adds some, and `-b`
gives a storage device a new backing that the host layer fills with a copy
of the old one. A writable backing is never shared with the source: the
validator refuses it (two guests writing one disk destroy it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from translators.errors import HpvmError
from translators.grammar import format_statement
from translators.model import Device, Guest, NetworkDevice, StorageDevice, StorageType
from translators.plan import _find, _remove
from translators.validate import check_device, statement_of


@dataclass(frozen=True)
class Copy:
    """Storage to copy before the clone is defined: the source's device and the clone's."""

    source: StorageDevice
    clone: StorageDevice


def plan_clone(
    source: Guest,
    name: str,
    add: list[Device],
    delete: list[Device],
    copies: list[Device],
    label: str | None = None,
    autoboot: bool | None = None,
) -> tuple[Guest, list[Copy]]:
    """The clone's configuration (addresses, MACs, ports still to allocate) and its copies."""
    for statement in [*add, *copies]:
        check_device(statement)
    new = copy.deepcopy(source)
    new.name = name
    new.number = None
    if label is not None:
        new.label = label
    if autoboot is not None:
        new.autoboot = autoboot
    for nic in new.networks:
        _fresh_nic(nic)
    for statement in delete:
        _remove(new, _find(new, statement))
    jobs = [_copy_job(new, statement) for statement in copies]
    for statement in add:
        (new.storage if isinstance(statement, StorageDevice) else new.networks).append(statement)
    return new, jobs


def _fresh_nic(nic: NetworkDevice) -> None:
    """The clone's NIC: same adapter, slot and vswitch, a new MAC and port."""
    nic.mac = None
    nic.portid = None
    nic.text = None
    nic.requested = format_statement(nic)


def _copy_job(guest: Guest, statement: Device) -> Copy:
    if not isinstance(statement, StorageDevice):
        raise HpvmError("-b takes a storage statement", statement_of(statement))
    if not statement.addressed:
        raise HpvmError(
            "-b names the device to copy by its bus,slot,target (hpvmstatus -P NAME -d)",
            statement_of(statement),
        )
    found = [
        d
        for d in guest.storage
        if (d.adapter, d.bus, d.slot, d.target)
        == (statement.adapter, statement.bus, statement.slot, statement.target)
    ]
    if not found:
        raise HpvmError(f"guest {guest.name} has no storage there", statement_of(statement))
    old = found[0]
    if old.device is not statement.device:
        raise HpvmError(f"the device there is a {old.device}", statement_of(statement))
    if StorageType.NULL in (old.storage, statement.storage):
        raise HpvmError("an empty DVD tray has nothing to copy", statement_of(statement))
    new = copy.deepcopy(old)
    new.storage = statement.storage
    new.location = statement.location
    new.text = statement.text
    new.requested = format_statement(new)
    guest.storage[guest.storage.index(old)] = new
    return Copy(old, new)
