"""The guest model: plain dataclasses shared by parser, validator, renderer and reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Adapter(StrEnum):
    """Guest adapter types; AVIO ones are paravirtual (virtio), VIO ones emulated."""

    AVIO_STOR = "avio_stor"
    SCSI = "scsi"
    AVIO_LAN = "avio_lan"
    LAN = "lan"

    @property
    def is_avio(self) -> bool:
        return self in (Adapter.AVIO_STOR, Adapter.AVIO_LAN)


class DeviceType(StrEnum):
    DISK = "disk"
    DVD = "dvd"
    TAPE = "tape"
    CHANGER = "changer"
    BURNER = "burner"


class StorageType(StrEnum):
    DISK = "disk"
    LV = "lv"
    FILE = "file"
    NULL = "null"
    ATTACH = "attach"


@dataclass
class StorageDevice:
    """One `device:adapter:bus,slot,target:storage:location` statement."""

    device: DeviceType
    adapter: Adapter
    storage: StorageType
    location: str
    bus: int | None = None
    slot: int | None = None
    target: int | None = None
    # The statement in canonical spelling before allocation (kept in metadata),
    # and exactly as the user typed it (quoted in error messages).
    requested: str | None = field(default=None, compare=False)
    text: str | None = field(default=None, compare=False, repr=False)

    @property
    def addressed(self) -> bool:
        return None not in (self.bus, self.slot, self.target)

    @property
    def hba(self) -> tuple[int, int]:
        """The (bus, slot) of the virtual HBA this device sits behind."""
        assert self.bus is not None and self.slot is not None
        return (self.bus, self.slot)


@dataclass
class NetworkDevice:
    """One `network:adapter:bus,slot,mac:vswitch:name[:portid:N]` statement."""

    adapter: Adapter
    vswitch: str
    bus: int | None = None
    slot: int | None = None
    mac: str | None = None  # canonical lowercase aa:bb:cc:dd:ee:ff
    portid: int | None = None
    # The statement in canonical spelling before allocation (kept in metadata),
    # and exactly as the user typed it (quoted in error messages).
    requested: str | None = field(default=None, compare=False)
    text: str | None = field(default=None, compare=False, repr=False)

    @property
    def addressed(self) -> bool:
        return None not in (self.bus, self.slot, self.mac)


Device = StorageDevice | NetworkDevice


@dataclass
class BootExtension:
    """Direct kernel boot for small Linux guests (an avio-kvm extension, not HPVM)."""

    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


@dataclass
class Guest:
    """A guest as HPVM describes it."""

    name: str
    os_type: str = "unknown"
    vcpus: int = 1
    memory_mb: int = 2048
    autoboot: bool = True
    label: str | None = None
    storage: list[StorageDevice] = field(default_factory=list)
    networks: list[NetworkDevice] = field(default_factory=list)
    boot: BootExtension = field(default_factory=BootExtension)
    virt_type: str | None = None  # "kvm" | "qemu"; None = decided by the host layer
    number: int | None = None  # HPVM's "VM #", given when the guest is created

    @property
    def devices(self) -> list[Device]:
        return [*self.storage, *self.networks]
