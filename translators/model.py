"""The guest model: plain dataclasses shared by parser, validator, renderer and reader.

A guest keeps one device list per registered kind (`devices.registry.KINDS`):
`guest.devices` is all of them in registry order, `guest.of_kind(kind)` one
list, and `guest.storage` / `guest.networks` are the lists of the two kinds
HPVM's own commands name. A new kind needs no new field here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from translators.devices import registry
from translators.devices.adapter import Adapter
from translators.devices.base import Device
from translators.devices.network import NetworkDevice
from translators.devices.storage import DeviceType, StorageDevice, StorageType

__all__ = [
    "Adapter",
    "BootExtension",
    "Device",
    "DeviceType",
    "Guest",
    "NetworkDevice",
    "StorageDevice",
    "StorageType",
]


@dataclass
class BootExtension:
    """Direct kernel boot for small Linux guests (an avio-kvm extension, not HPVM)."""

    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(init=False)
class Guest:
    """A guest as HPVM describes it."""

    name: str
    os_type: str
    vcpus: int
    memory_mb: int
    autoboot: bool
    label: str | None
    boot: BootExtension
    virt_type: str | None  # "kvm" | "qemu"; None = decided by the host layer
    number: int | None  # HPVM's "VM #", given when the guest is created
    #: Kind name -> that kind's devices, one entry per registered kind, in registry order.
    device_lists: dict[str, list[Device]]

    def __init__(
        self,
        name: str,
        os_type: str = "unknown",
        vcpus: int = 1,
        memory_mb: int = 2048,
        autoboot: bool = True,
        label: str | None = None,
        storage: Iterable[StorageDevice] = (),
        networks: Iterable[NetworkDevice] = (),
        boot: BootExtension | None = None,
        virt_type: str | None = None,
        number: int | None = None,
        devices: Iterable[Device] = (),
    ) -> None:
        self.name = name
        self.os_type = os_type
        self.vcpus = vcpus
        self.memory_mb = memory_mb
        self.autoboot = autoboot
        self.label = label
        self.boot = boot if boot is not None else BootExtension()
        self.virt_type = virt_type
        self.number = number
        self.device_lists = {kind.KIND: [] for kind in registry.KINDS}
        for device in [*storage, *networks, *devices]:
            self.add(device)

    @property
    def devices(self) -> list[Device]:
        """Every device, kind by kind in registry order."""
        return [d for kind_list in self.device_lists.values() for d in kind_list]

    def of_kind(self, kind: type[Device]) -> list[Device]:
        """The guest's own list of one kind's devices (changes to it change the guest)."""
        return self.device_lists[kind.KIND]

    def add(self, device: Device) -> None:
        self.of_kind(registry.kind_of(device)).append(device)

    def remove(self, device: Device) -> None:
        """Remove this very device (not one equal to it)."""
        kind = registry.kind_of(device).KIND
        self.device_lists[kind] = [d for d in self.device_lists[kind] if d is not device]

    def replace(self, old: Device, new: Device) -> None:
        kind_list = self.of_kind(registry.kind_of(old))
        kind_list[kind_list.index(old)] = new

    @property
    def storage(self) -> list[StorageDevice]:
        return self.device_lists[StorageDevice.KIND]  # type: ignore[return-value]

    @storage.setter
    def storage(self, devices: list[StorageDevice]) -> None:
        self.device_lists[StorageDevice.KIND] = devices  # type: ignore[assignment]

    @property
    def networks(self) -> list[NetworkDevice]:
        return self.device_lists[NetworkDevice.KIND]  # type: ignore[return-value]

    @networks.setter
    def networks(self, devices: list[NetworkDevice]) -> None:
        self.device_lists[NetworkDevice.KIND] = devices  # type: ignore[assignment]
