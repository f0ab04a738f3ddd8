"""Resource statements (`-a`/`-d`/`-m` arguments) <-> model devices.

Syntax only: what a statement says. Whether it is allowed (ranges, AVIO
limits, duplicates) is decided in `validate`.
"""

from __future__ import annotations

import re

from translators.errors import HpvmError, Warnings
from translators.model import (
    Adapter,
    Device,
    DeviceType,
    NetworkDevice,
    StorageDevice,
    StorageType,
)
from translators.text import bad_character, check_path, check_text, parse_number

STORAGE_ADAPTERS = {
    "avio_stor": Adapter.AVIO_STOR,
    "aviostor": Adapter.AVIO_STOR,
    "scsi": Adapter.SCSI,
}
NETWORK_ADAPTERS = {"avio_lan": Adapter.AVIO_LAN, "aviolan": Adapter.AVIO_LAN, "lan": Adapter.LAN}
UNSUPPORTED_STORAGE = {
    "attach_path": "pass-through ('attach_path') is not supported on KVM hosts",
    "npiv": "NPIV virtual HBAs ('npiv') are not supported on KVM hosts",
}
VSWITCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
MAC_DASHED = re.compile(r"[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}")
MAC_HEX = re.compile(r"0[xX][0-9a-fA-F]{12}")


def parse_statement(text: str, warnings: Warnings | None = None) -> Device:
    """Parse one resource statement into a device, normalising known typos."""
    statement = text.strip()
    if not statement:
        raise HpvmError("empty resource statement")
    if bad_character(statement) is not None:
        check_text(statement, "resource statement", statement)
    head = statement.split(":", 1)[0].lower()
    if head == "network":
        device: Device = _parse_network(statement, warnings)
    elif head in {d.value for d in DeviceType} or head == "hba":
        device = _parse_storage(statement, warnings)
    else:
        raise HpvmError(f"unknown device type '{head}' in resource statement", statement)
    # What the user asked for, in canonical spelling, before allocation fills
    # in omitted fields (HPVM shows avio_lan/avio_stor whichever spelling was typed).
    device.requested = format_statement(device)
    device.text = statement
    return device


def format_statement(device: Device) -> str:
    """The statement for a device, as `hpvmstatus -d` prints it (canonical spellings)."""
    if isinstance(device, StorageDevice):
        address = _join_address(device.bus, device.slot, device.target)
        return f"{device.device}:{device.adapter}:{address}:{device.storage}:{device.location}"
    mac = "" if device.mac is None else "0x" + device.mac.replace(":", "").upper()
    address = _join_address(device.bus, device.slot, mac or None)
    text = f"network:{device.adapter}:{address}:vswitch:{device.vswitch}"
    if device.portid is not None:
        text += f":portid:{device.portid}"
    return text


def normalise_mac(text: str, statement: str) -> str:
    """`aa-bb-cc-00-11-22` or `0xAABBCC001122` -> `aa:bb:cc:00:11:22`."""
    if MAC_DASHED.fullmatch(text):
        digits = text.replace("-", "")
    elif MAC_HEX.fullmatch(text):
        digits = text[2:]
    else:
        raise HpvmError(
            f"bad MAC address '{text}' (use aa-bb-cc-dd-ee-ff or 0xaabbccddeeff)", statement
        )
    digits = digits.lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def dashed_mac(mac: str) -> str:
    """`aa:bb:..` -> `aa-bb-..` (the layout of `hpvmstatus` tables)."""
    return mac.replace(":", "-")


def _join_address(*parts: object) -> str:
    """`0,1,3`; omitted parts stay empty, trailing empty parts are dropped."""
    return ",".join("" if part is None else str(part) for part in parts).rstrip(",")


def _parse_int(text: str, what: str, statement: str) -> int | None:
    """An address part or port id: empty, or ASCII digits (a few: every limit is small)."""
    text = text.strip()
    if text == "":
        return None
    return parse_number(text, what, statement, digits=6)


def _parse_storage(statement: str, warnings: Warnings | None) -> StorageDevice:
    fields = statement.split(":", 4)
    notes: list[str] = []
    # The seed's own examples omit the ':' after the storage type:
    # `hba:aviostor::disk/dev/rdisk/disk1`.
    if len(fields) == 4:
        storage_kw, sep, rest = fields[3].partition("/")
        if sep and storage_kw.lower() in {s.value for s in StorageType}:
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
    numbers = [_parse_int(part, "address part", statement) for part in parts]
    bus, slot, target = (numbers + [None] * 3)[:3]
    location = location.strip()
    if storage is not StorageType.NULL and not location:
        raise HpvmError(f"'{storage}' storage needs a host path", statement)
    if location:
        check_path(location, "host path", statement)
    device = StorageDevice(device_type, adapter, storage, location, bus, slot, target)
    if notes and warnings is not None:
        warnings.add(f"read '{statement}' as '{format_statement(device)}' ({'; '.join(notes)})")
    return device


def _parse_network(statement: str, warnings: Warnings | None) -> NetworkDevice:
    fields = statement.split(":")
    if len(fields) == 4 and fields[2].lower() == "vswitch":
        # HPVM 3.5 accepted `network:lan:vswitch:NAME` with no address field.
        fields = [fields[0], fields[1], "", *fields[2:]]
        if warnings is not None:
            normal = ":".join(fields)
            warnings.add(f"read '{statement}' as '{normal}' (missing address field)")
    if len(fields) not in (5, 7):
        raise HpvmError(
            "network statement needs network:adapter:bus,slot,mac:vswitch:name[:portid:N]",
            statement,
        )
    _, adapter_kw, address, backing, vswitch = fields[:5]
    adapter = NETWORK_ADAPTERS.get(adapter_kw.lower())
    if adapter is None:
        raise HpvmError(f"unknown network adapter '{adapter_kw}'", statement)
    if backing.lower() != "vswitch":
        raise HpvmError(f"network backing must be 'vswitch', not '{backing}'", statement)
    if not VSWITCH_NAME.fullmatch(vswitch):
        raise HpvmError(f"bad vswitch name '{vswitch}'", statement)
    portid = None
    if len(fields) == 7:
        if fields[5].lower() != "portid":
            raise HpvmError(f"expected 'portid', found '{fields[5]}'", statement)
        portid = _parse_int(fields[6], "port id", statement)
        if portid is None:
            raise HpvmError("'portid' needs a number", statement)
    parts = address.split(",") if address.strip() else []
    if len(parts) > 3:
        raise HpvmError(f"address '{address}' has more than bus,slot,mac", statement)
    parts += [""] * (3 - len(parts))
    bus = _parse_int(parts[0], "PCI bus", statement)
    slot = _parse_int(parts[1], "PCI slot", statement)
    mac = normalise_mac(parts[2].strip(), statement) if parts[2].strip() else None
    return NetworkDevice(adapter, vswitch, bus, slot, mac, portid)
