"""Desired state from a guest config file vs a guest's definition: what to add and remove."""

from __future__ import annotations

from collections.abc import Callable

from agent.storage.hostcheck import backing_key
from translators.model import Device, Guest
from translators.plan import matches


def diff_devices(
    desired: Guest, current: Guest, key: Callable[[str], str] = backing_key
) -> tuple[list[Device], list[Device]]:
    """(statements to add, current devices to delete) that make `current` match `desired`.

    A desired statement is satisfied by a current device whose fields agree with
    every field the statement gives (omitted addresses match any); locations
    compare by identity (`key`), so another name of the same storage is no change.
    """
    unclaimed = list(current.devices)
    add: list[Device] = []
    for wanted in desired.devices:
        match = next((d for d in unclaimed if matches(wanted, d, key)), None)
        if match is None:
            add.append(wanted)
        else:
            unclaimed.remove(match)
    return add, unclaimed
