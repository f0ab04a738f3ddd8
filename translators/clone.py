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

from translators.model import Device, Guest, StorageDevice
from translators.plan import _find
from translators.validate import check_device


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
    for device in new.devices:
        device.forget_identity()
    for statement in delete:
        new.remove(_find(new, statement))
    jobs = [Copy(*statement.copy_backing(new)) for statement in copies]  # type: ignore[arg-type]
    for statement in add:
        new.add(statement)
    return new, jobs
