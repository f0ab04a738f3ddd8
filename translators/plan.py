"""Plan an `hpvmmodify`: the device changes between a guest and what the user asked.

Pure: takes the guest's model and the parsed statements, returns the new model
and an ordered list of changes for the host layer to apply. Each change
carries the XML the host layer hands libvirt; what "the same device" means
is the kind's (`Device.matches`, `PLACE`, `modified`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from translators.allocate import complete
from translators.devices import registry
from translators.devices.base import Action
from translators.errors import HpvmError
from translators.model import Device, Guest
from translators.readback import device_aliases, read_domain
from translators.render import compact, device_xml
from translators.validate import HostClaims, check_device, check_guest, statement_of

__all__ = ["Action", "Change", "matches", "plan_modify", "plugged"]


@dataclass
class Change:
    """One step for libvirt, with the XML it takes."""

    action: Action
    device: Device  # the device as it will be (attach/update) or as it was (detach)
    controller_xml: str | None = None  # attach the device's controller (HBA) first
    previous_xml: str | None = None  # update: the device as it was (to undo)
    xml: str = field(init=False)  # the device's libvirt XML
    alias: str = field(init=False)
    #: Why a running guest cannot take it (then nothing is done), if it cannot.
    live_refusal: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.xml = device_xml(self.device)
        self.alias = self.device.alias
        self.live_refusal = self.device.live_refusal(self.action)

    @property
    def new_controller(self) -> bool:
        return self.controller_xml is not None


def matches(statement: Device, device: Device, key: Callable[[str], str] | None = None) -> bool:
    """Does a `-d` statement name this device? Every field it gives must agree.

    Locations compare by `key` (the host's identity of a backing store) when given.
    """
    return registry.kind_of(statement).matches(statement, device, key)


def plugged(domain_xml: str, change: Change) -> bool:
    """Does a (running) domain have the change's device? By alias, else by its fields."""
    if change.alias in device_aliases(domain_xml):
        return True
    return any(matches(change.device, d) for d in read_domain(domain_xml).devices)


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


def _modified(guest: Guest, statement: Device) -> tuple[Device, Device, Action]:
    """(old, new, how) for a `-m` statement, keyed by its address."""
    kind = registry.kind_of(statement)
    statement.check_modify(guest)
    if None in statement.place:
        raise HpvmError(kind.PLACE_NEEDED, statement_of(statement))
    candidates = [d for d in guest.of_kind(kind) if d.place == statement.place]
    if not candidates:
        raise HpvmError(
            f"guest {guest.name} has no device at that address", statement_of(statement)
        )
    old = candidates[0]
    if old.adapter is not statement.adapter:
        raise HpvmError("changing the adapter type is not supported", statement_of(statement))
    new, how = statement.modified(old)
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
        new.remove(device)
        changes.append(Change(Action.DETACH, device))
    replaced: list[tuple[Device, Device, Action]] = []
    for statement in modify:
        old, changed, how = _modified(new, statement)
        new.replace(old, changed)
        replaced.append((old, changed, how))
    for statement in add:
        new.add(statement)
    check_guest(new, claims)
    controllers = {d.controller_key() for d in guest.devices} - {None}
    done = complete(new, claims)
    for old, changed, how in replaced:
        kind = registry.kind_of(old)
        final = done.of_kind(kind)[new.of_kind(kind).index(changed)]
        if how is Action.ATTACH:
            changes += [Change(Action.DETACH, old), Change(Action.ATTACH, final)]
        else:
            changes.append(Change(Action.UPDATE, final, previous_xml=device_xml(old)))
    for kind in registry.KINDS:
        count = sum(type(a) is kind for a in add)
        for device in done.of_kind(kind)[len(done.of_kind(kind)) - count :]:
            key = device.controller_key()
            controller = None
            if key is not None and key not in controllers:
                controllers.add(key)
                controller = device.render_controller()
            xml = None if controller is None else compact(controller)
            changes.append(Change(Action.ATTACH, device, controller_xml=xml))
    return done, changes
