"""Storage: `device:adapter:bus,slot,target:storage:location` (disks and DVDs behind HBAs).

AVIO (`avio_stor`) is a virtio-scsi controller, VIO (`scsi`) an emulated LSI
one; each HBA takes a PCI slot and its devices sit at SCSI targets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, cast

from lxml import etree

from translators import limits, pci
from translators.devices.adapter import Adapter
from translators.devices.base import (
    SUB,
    Action,
    Device,
    E,
    Layout,
    Slot,
    check_range,
    hpvm_slot,
    join_address,
    meta_items,
    number_text,
    parse_int,
    pci_address,
    statement_of,
    xml_int,
)
from translators.errors import HpvmError, Warnings
from translators.text import check_path

if TYPE_CHECKING:
    from translators.model import Guest
    from translators.validate import HostClaims


class DeviceType(StrEnum):
    DISK = "disk"
    DVD = "dvd"


class StorageType(StrEnum):
    DISK = "disk"
    LV = "lv"
    FILE = "file"
    NULL = "null"


STORAGE_ADAPTERS = {
    "avio_stor": Adapter.AVIO_STOR,
    "aviostor": Adapter.AVIO_STOR,
    "scsi": Adapter.SCSI,
}
UNSUPPORTED_STORAGE = {
    "attach": "'attach' is for attached devices (tape, changer, burner), not disks or dvds",
    "attach_path": "'attach_path' is for attached devices (tape, changer, burner), not disks",
    "npiv": "NPIV virtual HBAs ('npiv') are not supported on KVM hosts",
}
HEADS = {d.value for d in DeviceType} | {"hba"}
STORAGE_TYPES = {s.value for s in StorageType}
CONTROLLER_MODELS = {Adapter.AVIO_STOR: "virtio-scsi", Adapter.SCSI: "lsilogic"}
AVIO_CONTROLLERS = {"virtio-scsi", "vhost-scsi"}
READ_DEVICES = ("disk", "cdrom", "lun")  # `<disk device=...>` read back (not floppies)

#: Separates a disk's identity from its partition's in a backing key (`WHOLE#MAJ:MIN`).
PART = "#"
#: Returns the size in bytes of a backing store, or None when it does not exist.
SizeProbe = Callable[[str], int | None]


class BehindScsiHba:
    """What the kinds behind a guest's SCSI HBAs share (virtio-scsi for avio_stor, LSI
    for scsi; one HBA per bus,slot): their drive address and their HBAs' rendering."""

    adapter: Adapter
    bus: int | None
    slot: int | None
    target: int | None

    def drive_address(self, element: etree._Element) -> etree._Element:
        """`<address type='drive'>` of `element` at its target on its HBA."""
        assert self.bus is not None and self.slot is not None
        address = SUB(
            element,
            "address",
            type="drive",
            controller=str(controller_index(self.bus, self.slot)),
            bus="0",
        )
        if self.adapter is Adapter.AVIO_STOR:
            address.set("target", str(self.target))
            address.set("unit", "0")
        else:  # LSI: libvirt takes the SCSI id from `unit`
            address.set("target", "0")
            address.set("unit", str(self.target))
        return address

    @classmethod
    def render_all(cls, devices: list[Device]) -> list[etree._Element]:
        """The HBAs they sit behind (render_domain drops an HBA already there), then them."""
        hbas = sorted({(d.bus, d.slot, d.adapter) for d in devices})
        elements = [render_controller(adapter, bus, slot) for bus, slot, adapter in hbas]
        return elements + [d.render() for d in devices]

    def controller_key(self) -> object | None:
        return (self.adapter, self.bus, self.slot)

    def render_controller(self) -> etree._Element | None:
        assert self.bus is not None and self.slot is not None
        return render_controller(self.adapter, self.bus, self.slot)


@dataclass
class StorageDevice(BehindScsiHba, Device):
    """One `device:adapter:bus,slot,target:storage:location` statement."""

    KIND = "storage"
    SECTION = "storage"
    IDENTITY = ("device", "bus", "slot", "target", "storage")
    ADDRESS = ("bus", "slot", "target")
    ELEMENT = "disk"
    PLACE = ADDRESS
    PLACE_NEEDED = "-m needs the device's bus,slot,target"
    SHARES_SLOT = True
    HOST_BACKED = True

    device: DeviceType
    adapter: Adapter
    storage: StorageType
    location: str
    bus: int | None = None
    slot: int | None = None
    target: int | None = None
    #: Written as an `hba` statement (the seed's disk spelling; `-m hba` changes an HBA).
    as_hba: bool = field(default=False, compare=False, repr=False, kw_only=True)

    @property
    def hba(self) -> tuple[int, int]:
        """The (bus, slot) of the virtual HBA this device sits behind."""
        assert self.bus is not None and self.slot is not None
        return (self.bus, self.slot)

    @property
    def slot_kind(self) -> str:
        return str(self.adapter)

    # -- statements ----------------------------------------------------------
    @classmethod
    def claims(cls, fields: list[str]) -> bool:
        return fields[0].lower() in HEADS

    @classmethod
    def parse(cls, statement: str, warnings: Warnings | None) -> StorageDevice:
        fields = statement.split(":", 4)
        notes: list[str] = []
        # The seed's own examples omit the ':' after the storage type:
        # `hba:aviostor::disk/dev/rdisk/disk1`.
        if len(fields) == 4:
            storage_kw, sep, rest = fields[3].partition("/")
            if sep and storage_kw.lower() in STORAGE_TYPES:
                fields = [*fields[:3], storage_kw, "/" + rest]
                notes.append("missing ':' after the storage type")
        if len(fields) != 5:
            raise HpvmError(
                "storage statement needs 5 fields, device:adapter:bus,slot,target:storage:location",
                statement,
            )
        device_kw, adapter_kw, address, storage_kw, location = fields
        adapter = STORAGE_ADAPTERS.get(adapter_kw.lower())
        if adapter is None:
            raise HpvmError(f"unknown storage adapter '{adapter_kw}'", statement)
        storage_kw = storage_kw.lower()
        if storage_kw in UNSUPPORTED_STORAGE:
            raise HpvmError(UNSUPPORTED_STORAGE[storage_kw], statement)
        try:
            storage = StorageType(storage_kw)
        except ValueError:
            raise HpvmError(f"unknown storage type '{storage_kw}'", statement) from None
        device_kw = device_kw.lower()
        if device_kw == "hba":
            # 4.1 had no NPIV: an `hba` with disk-like backing is the seed's way of
            # writing a disk behind an AVIO HBA.
            if storage is StorageType.NULL:
                raise HpvmError("'hba' with 'null' storage makes no device", statement)
            device_type = DeviceType.DISK
            notes.append("device type 'hba' taken as 'disk'")
        else:
            device_type = DeviceType(device_kw)
        parts = address.split(",") if address.strip() else []
        if len(parts) > 3:
            raise HpvmError(f"address '{address}' has more than bus,slot,target", statement)
        numbers = [parse_int(part, "address part", statement) for part in parts]
        bus, slot, target = (numbers + [None] * 3)[:3]
        location = location.strip()
        if storage is not StorageType.NULL and not location:
            raise HpvmError(f"'{storage}' storage needs a host path", statement)
        if location:
            check_path(location, "host path", statement)
        device = cls(
            device_type, adapter, storage, location, bus, slot, target, as_hba=device_kw == "hba"
        )
        if notes and warnings is not None:
            warnings.add(f"read '{statement}' as '{device.format()}' ({'; '.join(notes)})")
        return device

    def format(self) -> str:
        address = join_address(self.bus, self.slot, self.target)
        return f"{self.device}:{self.adapter}:{address}:{self.storage}:{self.location}"

    # -- rules ---------------------------------------------------------------
    def check(self) -> None:
        stmt = statement_of(self)
        if self.storage is StorageType.NULL and self.device is not DeviceType.DVD:
            raise HpvmError("'null' storage is only for dvd devices", stmt)
        if self.device is DeviceType.DVD and self.storage is StorageType.LV:
            raise HpvmError("a dvd is backed by 'disk', 'file' or 'null', not 'lv'", stmt)
        check_range(self.bus, limits.PCI_BUSES[self.adapter], "PCI bus", stmt)
        check_range(self.slot, limits.PCI_SLOTS, "PCI slot", stmt)
        what = "target" if self.adapter is Adapter.AVIO_STOR else "target (emulated LSI SCSI id)"
        check_range(self.target, limits.TARGETS[self.adapter], what, stmt)

    def check_slot_mates(self, earlier: list[Device]) -> None:
        if self.target is None:
            return
        for other in earlier:
            if getattr(other, "target", None) == self.target:
                raise HpvmError(
                    f"address {self.bus},{self.slot},{self.target} is already used by "
                    f"'{statement_of(other)}'",
                    statement_of(self),
                )

    @classmethod
    def check_guest(cls, devices: list[Device], guest: Guest, claims: HostClaims) -> None:
        check_backings(guest, claims)

    # -- allocation ----------------------------------------------------------
    @classmethod
    def complete(
        cls, devices: list[Device], layout: Layout, guest: Guest, claims: HostClaims
    ) -> None:
        targets = used_targets(guest.devices)  # of every kind that sits behind HBAs
        for dev in devices:
            if not dev.addressed:
                place_on_hba(dev, layout, targets)

    # -- libvirt XML ---------------------------------------------------------
    @property
    def alias(self) -> str:
        return f"ua-{self.adapter.replace('_', '-')}-{self.bus}-{self.slot}-{self.target}"

    @property
    def target_dev(self) -> str:
        """A stable, unique `sdX` name from the HPVM address (libvirt requires one)."""
        assert self.bus is not None and self.slot is not None and self.target is not None
        index = (self.bus * 8 + self.slot) * 128 + self.target
        letters = ""
        index += 1
        while index:
            index, rem = divmod(index - 1, 26)
            letters = chr(ord("a") + rem) + letters
        return "sd" + letters

    def render(self) -> etree._Element:
        """A disk or DVD behind its HBA, at the HPVM target."""
        assert self.addressed, self
        assert self.bus is not None and self.slot is not None
        is_dvd = self.device is DeviceType.DVD
        block = self.storage in (StorageType.DISK, StorageType.LV)
        disk = E("disk", type="block" if block else "file", device="cdrom" if is_dvd else "disk")
        driver = SUB(disk, "driver", name="qemu", type="raw")
        if block and not is_dvd:
            driver.set("cache", "none")
            driver.set("io", "native")
        if self.storage is not StorageType.NULL:
            SUB(disk, "source", **{"dev" if block else "file": self.location})
        SUB(disk, "target", dev=self.target_dev, bus="scsi")
        if is_dvd:
            SUB(disk, "readonly")
        SUB(disk, "alias", name=self.alias)
        self.drive_address(disk)
        return disk

    def metadata_facts(self) -> dict[str, str]:
        """The storage type (`lv` and `disk` look alike), an empty tray's last media."""
        facts = {"storage": str(self.storage)}
        if self.storage is StorageType.NULL and self.location:
            facts["location"] = self.location
        return facts

    @classmethod
    def reads(cls, element: etree._Element) -> bool:
        return element.tag == cls.ELEMENT and element.get("device", "disk") in READ_DEVICES

    @classmethod
    def read_all(
        cls, elements: list[etree._Element], domain: etree._Element, meta: etree._Element | None
    ) -> list[Device]:
        controllers = {
            xml_int(ctl.get("index")): ctl
            for ctl in domain.iterfind("devices/controller[@type='scsi']")
        }
        items = meta_items(meta, cls.KIND)
        return [_read_disk(disk, controllers, items) for disk in elements]

    # -- plans ---------------------------------------------------------------
    def matches(self, device: Device, key: Callable[[str], str] | None = None) -> bool:
        """Locations compare by `key` (the host's identity of a backing store) when given."""
        if not super().matches(device, key):
            return False
        device = cast(StorageDevice, device)
        if self.location and self.location != device.location:
            if key is None or not device.location:
                return False
            if key(self.location) != key(device.location):
                return False
        return True

    def modified(self, old: Device) -> tuple[Device, Action]:
        old = cast(StorageDevice, old)
        if self.device is not old.device:
            raise HpvmError(f"the device at that address is a {old.device}", statement_of(self))
        new = replace(
            old,
            storage=self.storage,
            location=self.location,
            requested=self.requested,
            text=self.text,
        )
        return new, Action.UPDATE if old.device is DeviceType.DVD else Action.ATTACH

    def check_modify(self, guest: Guest) -> None:
        """HPVM: `-m hba` is refused while attached devices sit on that adapter."""
        if not self.as_hba or self.bus is None or self.slot is None:
            return
        for other in guest.devices:
            if other.ATTACHED and (other.bus, other.slot) == (self.bus, self.slot):
                raise HpvmError(
                    f"-m hba is refused while attached devices sit on the adapter at bus "
                    f"{self.bus} slot {self.slot} ('{statement_of(other)}')",
                    statement_of(self),
                )

    def live_refusal(self, action: Action) -> str | None:
        if self.adapter is Adapter.SCSI:
            return (
                "the emulated LSI SCSI adapter (VIO scsi) cannot hot-plug: the guest would "
                "not see the change; stop the guest first, or use avio_stor"
            )
        if action is Action.ATTACH and self.storage is StorageType.NULL:
            return (
                "an empty DVD cannot be hot-plugged into a running guest (libvirt needs "
                "media to plug a cdrom); add it with media (dvd:...:file:ISO) or while "
                "the guest is stopped"
            )
        return None

    def copy_backing(self, guest: Guest) -> tuple[Device, Device]:
        if not self.addressed:
            raise HpvmError(
                "-b names the device to copy by its bus,slot,target (hpvmstatus -P NAME -d)",
                statement_of(self),
            )
        found = [
            d
            for d in guest.storage
            if (d.adapter, d.bus, d.slot, d.target)
            == (self.adapter, self.bus, self.slot, self.target)
        ]
        if not found:
            raise HpvmError(f"guest {guest.name} has no storage there", statement_of(self))
        old = found[0]
        if old.device is not self.device:
            raise HpvmError(f"the device there is a {old.device}", statement_of(self))
        if StorageType.NULL in (old.storage, self.storage):
            raise HpvmError("an empty DVD tray has nothing to copy", statement_of(self))
        new = copy.deepcopy(old)
        new.storage = self.storage
        new.location = self.location
        new.text = self.text
        new.requested = new.format()
        guest.storage[guest.storage.index(old)] = new
        return old, new

    # -- hpvmstatus ----------------------------------------------------------
    def status_row(self) -> list[str]:
        return [
            str(self.device),
            str(self.adapter),
            number_text(self.bus),
            number_text(self.slot),
            "0",
            number_text(self.target),
            "0",
            str(self.storage),
            self.location,
        ]

    def status_lines(self) -> list[str]:
        return [
            f"Guest Device type :{self.device}",
            f"Guest Adaptor type :{self.adapter}",
            f"Bus :{number_text(self.bus)}",
            f"Device :{number_text(self.slot)}",
            "Function :0",
            f"Target :{number_text(self.target)}",
            "Lun :0",
            f"Physical Storage type :{self.storage}",
            f"Physical device :{self.location}",
        ]


def used_targets(devices: list[Device]) -> dict[Slot, set[int]]:
    """The SCSI targets taken on each HBA (bus, slot), by devices of any kind."""
    targets: dict[Slot, set[int]] = {}
    for dev in devices:
        target = getattr(dev, "target", None)
        if dev.bus is not None and dev.slot is not None and target is not None:
            targets.setdefault((dev.bus, dev.slot), set()).add(target)
    return targets


def place_on_hba(dev: Device, layout: Layout, targets: dict[Slot, set[int]]) -> None:
    """Give a device behind an HBA (a `target` field) its bus, slot and target, in place:
    the first HBA of its adapter with a free target, else a new HBA in the first free slot."""
    if dev.bus is not None and dev.slot is not None:
        candidates = [(dev.bus, dev.slot)]
    else:
        candidates = [
            hba
            for hba in layout.holding(dev.slot_kind)
            if (dev.bus is None or hba[0] == dev.bus) and (dev.slot is None or hba[1] == dev.slot)
        ]
    for hba in candidates:
        target = _free_target(dev, targets.get(hba, set()))
        if target is not None:
            break
    else:
        new = layout.free_slot(dev.adapter, dev.bus, dev.slot)
        if new is None or (dev.bus is not None and dev.slot is not None):
            raise HpvmError("no free target or PCI slot left for", statement_of(dev))
        hba, target = new, _free_target(dev, targets.get(new, set()))
        layout.slots[hba] = dev.slot_kind
    assert target is not None
    dev.bus, dev.slot = hba
    dev.target = target  # type: ignore[attr-defined]
    targets.setdefault(hba, set()).add(target)


def _free_target(dev: Device, used: set[int]) -> int | None:
    wanted = getattr(dev, "target", None)
    if wanted is not None:
        return None if wanted in used else wanted
    return next((t for t in limits.TARGETS[dev.adapter] if t not in used), None)


def controller_index(bus: int, slot: int) -> int:
    """libvirt SCSI controller index of the HBA at HPVM (bus, slot)."""
    return bus * 8 + slot


def controller_alias(adapter: Adapter, bus: int, slot: int) -> str:
    return f"ua-hba-{adapter.replace('_', '-')}-{bus}-{slot}"


def render_controller(adapter: Adapter, bus: int, slot: int) -> etree._Element:
    """The virtual HBA at HPVM (bus, slot): virtio-scsi for AVIO, LSI for VIO."""
    ctl = E(
        "controller",
        type="scsi",
        index=str(controller_index(bus, slot)),
        model=CONTROLLER_MODELS[adapter],
    )
    SUB(ctl, "alias", name=controller_alias(adapter, bus, slot))
    pci_address(ctl, *pci.to_pci(bus, slot))
    return ctl


def _read_disk(
    disk: etree._Element,
    controllers: dict[int, etree._Element],
    meta: dict[str, etree._Element],
) -> StorageDevice:
    device = DeviceType.DVD if disk.get("device", "disk") == "cdrom" else DeviceType.DISK
    source = disk.find("source")
    location = ""
    if source is not None:
        location = source.get("dev") or source.get("file") or ""
    alias = disk.find("alias")
    item = meta.get(alias.get("name")) if alias is not None else None
    if not location:
        storage = StorageType.NULL
        location = item.get("location", "") if item is not None else ""
    elif item is not None and item.get("storage"):
        storage = StorageType(item.get("storage"))
    else:
        storage = StorageType.DISK if disk.get("type") == "block" else StorageType.FILE
    bus_kind = disk.find("target").get("bus") if disk.find("target") is not None else None
    address = disk.find("address[@type='drive']")
    if bus_kind == "scsi":
        # A disk libvirt has not yet given an address sits on controller 0.
        ctl = controllers.get(xml_int(address.get("controller")) if address is not None else 0)
        model = ctl.get("model") if ctl is not None else None
        adapter = Adapter.AVIO_STOR if model in AVIO_CONTROLLERS else Adapter.SCSI
        bus, slot = hpvm_slot(ctl) if ctl is not None else (None, None)
        target = None
        if address is not None:
            target = xml_int(address.get("target" if adapter is Adapter.AVIO_STOR else "unit"))
    else:
        adapter = Adapter.AVIO_STOR if bus_kind == "virtio" else Adapter.SCSI
        bus, slot = hpvm_slot(disk)
        target = None
    requested = item.get("statement") if item is not None else None
    return StorageDevice(device, adapter, storage, location, bus, slot, target, requested=requested)


def same_storage(a: str, b: str) -> bool:
    """Do two backing keys name overlapping storage: the same, or a disk and its partition?

    Keys come from `HostClaims.key`: the host layer makes one device (or file)
    under any name one key, and a partition's key its disk's key + `PART` + its own.
    """
    if a == b:
        return True
    if not a.startswith(("blk:", "file:")) or not b.startswith(("blk:", "file:")):
        return False
    return a.startswith(b + PART) or b.startswith(a + PART)


def check_backings(guest: Guest, claims: HostClaims) -> None:
    """One storage (under any name, or a disk and its partition) backs one device."""
    seen: list[tuple[str, StorageDevice]] = []
    for dev in guest.storage:
        if dev.storage is StorageType.NULL:
            continue
        key = claims.key(dev.location)
        for other_key, other in seen:
            if same_storage(key, other_key):
                raise HpvmError(
                    f"backing store {dev.location} is already used in this guest by "
                    f"'{statement_of(other)}'" + _alias_note(dev.location, other.location),
                    statement_of(dev),
                )
        seen.append((key, dev))
        for other_key, owner in claims.backings.items():
            if owner == guest.name or not same_storage(key, other_key):
                continue
            if other_key == key and key in claims.shared:
                others = claims.backing_adapters.get(key, set()) - {str(dev.adapter)}
                if not others:
                    continue  # SHARE=YES, all through the same kind of adapter
                raise HpvmError(
                    f"backing store {dev.location} is shared (SHARE=YES), but guest '{owner}' "
                    f"uses it through {', '.join(sorted(others))}: one device is never used "
                    "through VIO and AVIO at once",
                    statement_of(dev),
                )
            raise HpvmError(
                f"backing store {dev.location} is already used by guest '{owner}' "
                f"(hpvmdevmgmt -m gdev:{dev.location}:attr:SHARE=YES lets guests share it)",
                statement_of(dev),
            )


def _alias_note(location: str, other: str) -> str:
    return "" if location == other else f" (the same storage as {other}, or overlapping it)"


def check_sizes(guest: Guest, probe: SizeProbe) -> None:
    """Disks need at least 512 bytes of backing, DVD media 2048 (when the backing exists)."""
    for dev in guest.storage:
        if dev.storage is StorageType.NULL:
            continue
        size = probe(dev.location)
        if size is None:
            continue
        minimum = limits.MIN_DVD_BYTES if dev.device is DeviceType.DVD else limits.MIN_DISK_BYTES
        if size < minimum:
            raise HpvmError(
                f"backing store {dev.location} has {size} bytes, a {dev.device} needs at least "
                f"{minimum}",
                statement_of(dev),
            )
