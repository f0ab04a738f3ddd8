"""Desired state from a guest config file vs a guest's definition: what to add and remove."""

from __future__ import annotations

from translators.model import Device, Guest
from translators.plan import matches


def diff_devices(desired: Guest, current: Guest) -> tuple[list[Device], list[Device]]:
    """(statements to add, current devices to delete) that make `current` match `desired`.

    A desired statement is satisfied by a current device whose fields agree with
    every field the statement gives (omitted addresses match any).
    """
    unclaimed = list(current.devices)
    add: list[Device] = []
    for wanted in desired.devices:
        match = next((d for d in unclaimed if matches(wanted, d)), None)
        if match is None:
            add.append(wanted)
        else:
            unclaimed.remove(match)
    return add, unclaimed
