"""SCSI pass-through: `tape|changer|burner:scsi:b,d,t:attach:DEV` (VIO) and
`tape|changer|burner:avio_stor:b,d,t:attach_path:LUNPATH` (AVIO).

A host SCSI device (a tape, a medium changer, a CD/DVD burner) is handed to
the guest whole, as libvirt's `<hostdev mode='subsystem' type='scsi'>`,
behind the guest's HBA (virtio-scsi for AVIO, LSI for VIO) at the requested
target. Its host address `H:C:T:L`, SCSI type and identity are host facts:
the host layer (`agent/devices/scsi.py`) resolves the statement's device and
fills them in (`resolve`); this module never looks at the host.

Spelling (our choice; Linux has no HP-UX lunpaths): `attach` takes a device
node (`/dev/sgN`, `/dev/stN`, `/dev/nstN`, `/dev/srN`, `/dev/tape/by-id/...`,
`/dev/disk/by-path/...`), `attach_path` the SCSI address `H:C:T:L` or a
`/sys/...` path that resolves to one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, cast

from lxml import etree

from translators import limits
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
    statement_of,
    xml_int,
)
from translators.devices.storage import (
    AVIO_CONTROLLERS,
    STORAGE_ADAPTERS,
    BehindScsiHba,
    StorageDevice,
    place_on_hba,
    used_targets,
)
from translators.errors import HpvmError, Warnings
from translators.text import check_path

if TYPE_CHECKING:
    from translators.model import Guest
    from translators.validate import HostClaims


class PassDevice(StrEnum):
    TAPE = "tape"
    CHANGER = "changer"
    BURNER = "burner"


class AttachType(StrEnum):
    ATTACH = "attach"  # VIO: a host device node
    ATTACH_PATH = "attach_path"  # AVIO: a SCSI address (H:C:T:L) or /sys path


#: The SCSI peripheral device type each device type must have on the host.
SCSI_TYPES = {PassDevice.TAPE: 1, PassDevice.CHANGER: 8, PassDevice.BURNER: 5}
#: The one attach type each adapter takes (HPVM: attach is VIO only, attach_path AVIO only).
ATTACH_OF = {Adapter.SCSI: AttachType.ATTACH, Adapter.AVIO_STOR: AttachType.ATTACH_PATH}
HCTL = re.compile(r"(\d{1,6}):(\d{1,6}):(\d{1,6}):(\d{1,12})")


def parse_hctl(text: str) -> tuple[int, int, int, int] | None:
    """`H:C:T:L` as four numbers, or None when `text` is not one."""
    found = HCTL.fullmatch(text.strip())
    return tuple(int(part) for part in found.groups()) if found else None  # type: ignore[return-value]


@dataclass
class ScsiPassthroughDevice(BehindScsiHba, Device):
    """One attached SCSI device (HPVM's tape, changer or burner)."""

    KIND = "scsi"
    SECTION = "storage"
    IDENTITY = ("device", "bus", "slot", "target", "storage")
    ADDRESS = ("bus", "slot", "target")
    ELEMENT = "hostdev"
    PLACE = ADDRESS
    PLACE_NEEDED = "-m needs the device's bus,slot,target"
    SHARES_SLOT = True
    ATTACHED = True

    device: PassDevice
    adapter: Adapter
    storage: AttachType
    location: str
    bus: int | None = None
    slot: int | None = None
    target: int | None = None
    # Host facts, filled in by the host layer (`resolve`) or read back from libvirt.
    host: str | None = field(default=None, compare=False, kw_only=True)  # "H:C:T:L"
    scsi_type: int | None = field(default=None, compare=False, kw_only=True)
    identity: str | None = field(default=None, compare=False, kw_only=True)

    @property
    def slot_kind(self) -> str:
        return str(self.adapter)  # shares its HBA with disks and DVDs of the same adapter

    # -- statements ----------------------------------------------------------
    @classmethod
    def claims(cls, fields: list[str]) -> bool:
        return fields[0].lower() in {d.value for d in PassDevice}

    @classmethod
    def parse(cls, statement: str, warnings: Warnings | None) -> ScsiPassthroughDevice:
        fields = statement.split(":", 4)
        if len(fields) != 5:
            raise HpvmError(
                "an attached device needs 5 fields, device:adapter:bus,slot,target:"
                "attach|attach_path:device",
                statement,
            )
        device_kw, adapter_kw, address, storage_kw, location = fields
        adapter = STORAGE_ADAPTERS.get(adapter_kw.lower())
        if adapter is None:
            raise HpvmError(f"unknown storage adapter '{adapter_kw}'", statement)
        device = PassDevice(device_kw.lower())
        try:
            storage = AttachType(storage_kw.lower())
        except ValueError:
            raise HpvmError(
                f"storage type '{storage_kw}' is not supported for a {device} (it is attached: "
                "'attach' with scsi, 'attach_path' with avio_stor)",
                statement,
            ) from None
        parts = address.split(",") if address.strip() else []
        if len(parts) > 3:
            raise HpvmError(f"address '{address}' has more than bus,slot,target", statement)
        numbers = [parse_int(part, "address part", statement) for part in parts]
        bus, slot, target = (numbers + [None] * 3)[:3]
        location = location.strip()
        if not location:
            raise HpvmError(f"'{storage}' needs the host device", statement)
        host = None
        if storage is AttachType.ATTACH_PATH:
            hctl = parse_hctl(location)
            if hctl is not None:
                location = ":".join(map(str, hctl))
                host = location
            elif not location.startswith("/sys/"):
                raise HpvmError(
                    f"'attach_path' takes the host's SCSI address H:C:T:L (e.g. 2:0:1:0) or a "
                    f"/sys/... path of one, not '{location}'",
                    statement,
                )
            else:
                check_path(location, "host path", statement)
        else:
            check_path(location, "host device", statement)
        return cls(device, adapter, storage, location, bus, slot, target, host=host)

    def format(self) -> str:
        address = join_address(self.bus, self.slot, self.target)
        return f"{self.device}:{self.adapter}:{address}:{self.storage}:{self.location}"

    # -- rules ---------------------------------------------------------------
    def check(self) -> None:
        stmt = statement_of(self)
        wanted = ATTACH_OF[self.adapter]
        if self.storage is not wanted:
            raise HpvmError(
                f"'{self.storage}' is not supported with {self.adapter} "
                f"(HPVM: 'attach' is VIO scsi only, 'attach_path' AVIO avio_stor only)",
                stmt,
            )
        check_range(self.bus, limits.PCI_BUSES[self.adapter], "PCI bus", stmt)
        check_range(self.slot, limits.PCI_SLOTS, "PCI slot", stmt)
        what = "target" if self.adapter is Adapter.AVIO_STOR else "target (emulated LSI SCSI id)"
        check_range(self.target, limits.TARGETS[self.adapter], what, stmt)
        if self.scsi_type is not None and self.scsi_type != SCSI_TYPES[self.device]:
            raise HpvmError(
                f"{self.location} is a SCSI device of type {self.scsi_type} "
                f"({type_name(self.scsi_type)}), not a {self.device} "
                f"(type {SCSI_TYPES[self.device]})",
                stmt,
            )

    def check_slot_mates(self, earlier: list[Device]) -> None:
        StorageDevice.check_slot_mates(self, earlier)  # type: ignore[arg-type]

    @classmethod
    def check_guest(cls, devices: list[Device], guest: Guest, claims: HostClaims) -> None:
        """One host device, one guest device; never one another guest has attached."""
        seen: dict[str, ScsiPassthroughDevice] = {}
        for dev in cast(list[ScsiPassthroughDevice], devices):
            for key in dev.claim_keys:
                other = seen.get(key)
                if other is not None:
                    raise HpvmError(
                        f"host device {dev.location} is already attached in this guest by "
                        f"'{statement_of(other)}'",
                        statement_of(dev),
                    )
                owner = claims.attached.get(key)
                if owner is not None and owner != guest.name:
                    raise HpvmError(
                        f"host device {dev.location} is already attached to guest '{owner}' "
                        "(an attached device belongs to one guest)",
                        statement_of(dev),
                    )
            seen.update(dict.fromkeys(dev.claim_keys, dev))

    @property
    def claim_keys(self) -> set[str]:
        """What names the host device across guests: its identity and its address."""
        keys = {self.identity} if self.identity else set()
        if self.host:
            keys.add(f"hctl:{self.host}")
        return keys

    # -- allocation ----------------------------------------------------------
    @classmethod
    def complete(
        cls, devices: list[Device], layout: Layout, guest: Guest, claims: HostClaims
    ) -> None:
        targets: dict[Slot, set[int]] = used_targets(guest.devices)
        for dev in devices:
            if not dev.addressed:
                place_on_hba(dev, layout, targets)

    # -- libvirt XML ---------------------------------------------------------
    @property
    def alias(self) -> str:
        return f"ua-pt-{self.adapter.replace('_', '-')}-{self.bus}-{self.slot}-{self.target}"

    def render(self) -> etree._Element:
        """`<hostdev type='scsi'>`: the host's H:C:T:L behind the guest's HBA at the target."""
        assert self.addressed, self
        assert self.bus is not None and self.slot is not None
        hctl = parse_hctl(self.host or "")
        if hctl is None:
            raise HpvmError(
                f"host device {self.location} has not been resolved to a SCSI address",
                statement_of(self),
            )
        host, channel, target, lun = hctl
        hostdev = E("hostdev", mode="subsystem", type="scsi")
        source = SUB(hostdev, "source")
        SUB(source, "adapter", name=f"scsi_host{host}")
        SUB(source, "address", bus=str(channel), target=str(target), unit=str(lun))
        # libvirt's own one-domain bookkeeping leaks a device that left the host while
        # attached (its release finds no /dev/sgN) and then refuses it when it returns,
        # even to the same guest: `shareable` turns that refusal off. One device, one
        # guest is enforced here instead (`check_guest`, with the host's claims).
        SUB(hostdev, "shareable")
        SUB(hostdev, "alias", name=self.alias)
        self.drive_address(hostdev)
        return hostdev

    def metadata_facts(self) -> dict[str, str]:
        """The statement's device as given, its identity and SCSI type (libvirt keeps H:C:T:L)."""
        facts = {"storage": str(self.storage), "location": self.location}
        if self.identity:
            facts["identity"] = self.identity
        if self.scsi_type is not None:
            facts["scsitype"] = str(self.scsi_type)
        facts["device"] = str(self.device)
        return facts

    @classmethod
    def reads(cls, element: etree._Element) -> bool:
        return element.tag == cls.ELEMENT and element.get("type") == "scsi"

    @classmethod
    def read_all(
        cls, elements: list[etree._Element], domain: etree._Element, meta: etree._Element | None
    ) -> list[Device]:
        controllers = {
            xml_int(ctl.get("index")): ctl
            for ctl in domain.iterfind("devices/controller[@type='scsi']")
        }
        items = meta_items(meta, cls.KIND)
        return [_read_hostdev(e, controllers, items) for e in elements]

    # -- plans ---------------------------------------------------------------
    def matches(self, device: Device, key: Callable[[str], str] | None = None) -> bool:
        """Every field given must agree; the host device by name, address or identity."""
        if not super().matches(device, key):
            return False
        device = cast(ScsiPassthroughDevice, device)
        if self.location == device.location:
            return True
        if self.host and self.host == device.host:
            return True
        if self.identity and self.identity == device.identity:
            return True
        return key is not None and key(self.location) == key(device.location)

    def live_refusal(self, action: Action) -> str | None:
        if self.adapter is Adapter.SCSI:
            return (
                "the emulated LSI SCSI adapter (VIO scsi) cannot hot-plug: the guest would "
                "not see the change; stop the guest first, or use avio_stor with attach_path"
            )
        return None

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


def type_name(scsi_type: int) -> str:
    """The SCSI peripheral device type's name (SPC)."""
    return {
        0: "disk",
        1: "tape",
        5: "CD/DVD",
        8: "medium changer",
        12: "RAID",
        13: "enclosure",
    }.get(scsi_type, "other")


def resolve(
    device: ScsiPassthroughDevice, host: str, scsi_type: int, identity: str | None
) -> ScsiPassthroughDevice:
    """The device with the host facts the host layer found for it (in place; returned)."""
    if parse_hctl(host) is None:
        raise HpvmError(f"bad SCSI address '{host}'", statement_of(device))
    if device.storage is AttachType.ATTACH_PATH and parse_hctl(device.location):
        device.location = host  # the address is the statement's name: it follows the device
    device.host = host
    device.scsi_type = scsi_type
    device.identity = identity
    return device


def _read_hostdev(
    hostdev: etree._Element,
    controllers: dict[int, etree._Element],
    meta: dict[str, etree._Element],
) -> ScsiPassthroughDevice:
    alias = hostdev.find("alias")
    item = meta.get(alias.get("name")) if alias is not None else None
    adapter_el = hostdev.find("source/adapter")
    source = hostdev.find("source/address")
    host = None
    if adapter_el is not None and source is not None:
        name = adapter_el.get("name", "")
        number = name.removeprefix("scsi_host")
        if number.isdigit():
            host = (
                f"{int(number)}:{xml_int(source.get('bus'))}:{xml_int(source.get('target'))}:"
                f"{xml_int(source.get('unit'))}"
            )
    address = hostdev.find("address[@type='drive']")
    ctl = controllers.get(xml_int(address.get("controller")) if address is not None else 0)
    model = ctl.get("model") if ctl is not None else None
    adapter = Adapter.AVIO_STOR if model in AVIO_CONTROLLERS else Adapter.SCSI
    bus, slot = hpvm_slot(ctl) if ctl is not None else (None, None)
    target = None
    if address is not None:
        target = xml_int(address.get("target" if adapter is Adapter.AVIO_STOR else "unit"))
    storage = ATTACH_OF[adapter]
    device = PassDevice.TAPE
    location = host or ""
    identity = scsi_type = requested = None
    if item is not None:
        device = PassDevice(item.get("device", "tape"))
        location = item.get("location") or location
        identity = item.get("identity")
        scsi_type = int(item.get("scsitype")) if (item.get("scsitype") or "").isdigit() else None
        requested = item.get("statement")
    return ScsiPassthroughDevice(
        device,
        adapter,
        storage,
        location,
        bus,
        slot,
        target,
        host=host,
        scsi_type=scsi_type,
        identity=identity,
        requested=requested,
    )
