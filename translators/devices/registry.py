"""The device kinds, in the order a guest lists, renders and allocates them.

A statement belongs to the first kind that claims it, so a kind that shares
its first word with another (SCSI pass-through with storage, PCI
pass-through with network) goes before it.
"""

from __future__ import annotations

from lxml import etree

from translators.devices.base import Device
from translators.devices.dio import DioDevice
from translators.devices.network import NetworkDevice
from translators.devices.scsi_passthrough import ScsiPassthroughDevice
from translators.devices.storage import StorageDevice
from translators.errors import HpvmError

KINDS: tuple[type[Device], ...] = (
    ScsiPassthroughDevice,
    StorageDevice,
    DioDevice,
    NetworkDevice,
)


def kind_of_statement(statement: str) -> type[Device]:
    """The kind that claims a statement; an unknown first word is bad input."""
    fields = statement.split(":")
    for kind in KINDS:
        if kind.claims(fields):
            return kind
    raise HpvmError(f"unknown device type '{fields[0].lower()}' in resource statement", statement)


def kind_of(device: Device) -> type[Device]:
    """A device's registered kind; a device of no registered kind is refused."""
    kind = type(device)
    if kind not in KINDS:
        name = getattr(kind, "KIND", kind.__name__)
        raise HpvmError(f"unknown device kind '{name}'", device.text or device.requested)
    return kind


def kind_reading(element: etree._Element) -> type[Device] | None:
    """The kind that reads a `<devices>` child, if one does."""
    return next((kind for kind in KINDS if kind.reads(element)), None)
