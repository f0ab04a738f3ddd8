"""libvirt domain XML -> guest model.

Reads our own domains exactly (model -> XML -> model is the identity) and
domains written by hand or by virt-install as well as it can: virtio disks
and NICs read as AVIO, everything else as VIO.
"""

from __future__ import annotations

from lxml import etree

from translators import pci
from translators.model import (
    Adapter,
    BootExtension,
    DeviceType,
    Guest,
    NetworkDevice,
    StorageDevice,
    StorageType,
)
from translators.render import NS

MEMORY_UNITS_KIB = {
    "b": 1 / 1024,
    "bytes": 1 / 1024,
    "k": 1,
    "kib": 1,
    "kb": 1000 / 1024,
    "m": 1024,
    "mib": 1024,
    "mb": 1000**2 / 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "gb": 1000**3 / 1024,
    "t": 1024**3,
    "tib": 1024**3,
    "tb": 1000**4 / 1024,
}
AVIO_CONTROLLERS = {"virtio-scsi", "vhost-scsi"}


def parse_xml(xml: str | bytes | etree._Element) -> etree._Element:
    if isinstance(xml, etree._Element):
        return xml
    if isinstance(xml, str):
        xml = xml.encode()
    return etree.fromstring(xml, etree.XMLParser(remove_blank_text=True, resolve_entities=False))


def _int(text: str | None, default: int = 0) -> int:
    if text is None:
        return default
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def _memory_mb(domain: etree._Element) -> int:
    memory = domain.find("memory")
    if memory is None or not memory.text:
        return 0
    unit = memory.get("unit", "KiB").lower()
    return round(int(memory.text) * MEMORY_UNITS_KIB[unit] / 1024)


def _hpvm_slot(element: etree._Element) -> tuple[int | None, int | None]:
    address = element.find("address[@type='pci']")
    if address is None:
        return (None, None)
    found = pci.from_pci(_int(address.get("bus")), _int(address.get("slot")))
    return found if found else (None, None)


def _os_type(domain: etree._Element, meta: etree._Element | None) -> str:
    if meta is not None and meta.findtext(f"{{{NS}}}os"):
        return meta.findtext(f"{{{NS}}}os")
    osinfo = domain.find(
        "metadata/{http://libosinfo.org/xmlns/libvirt/domain/1.0}libosinfo/"
        "{http://libosinfo.org/xmlns/libvirt/domain/1.0}os"
    )
    if osinfo is not None:
        return "windows" if "microsoft" in osinfo.get("id", "") else "linux"
    return "unknown"


def _number(meta: etree._Element | None) -> int | None:
    text = meta.findtext(f"{{{NS}}}number") if meta is not None else None
    return int(text) if text and text.isdigit() else None


def _meta_items(meta: etree._Element | None, tag: str) -> dict[str, etree._Element]:
    if meta is None:
        return {}
    return {item.get("alias"): item for item in meta.iter(f"{{{NS}}}{tag}")}


def read_domain(xml: str | bytes | etree._Element) -> Guest:
    """The guest model of a domain XML."""
    domain = parse_xml(xml)
    meta = domain.find(f"metadata/{{{NS}}}guest")
    guest = Guest(
        name=domain.findtext("name", ""),
        os_type=_os_type(domain, meta),
        vcpus=_int(domain.findtext("vcpu"), 1),
        memory_mb=_memory_mb(domain),
        autoboot=meta is not None and meta.findtext(f"{{{NS}}}start") == "auto",
        label=domain.findtext("title"),
        number=_number(meta),
        virt_type=domain.get("type"),
        boot=BootExtension(
            kernel=domain.findtext("os/kernel"),
            initrd=domain.findtext("os/initrd"),
            cmdline=domain.findtext("os/cmdline"),
        ),
    )
    controllers = {
        _int(ctl.get("index")): ctl for ctl in domain.iterfind("devices/controller[@type='scsi']")
    }
    storage_meta = _meta_items(meta, "storage")
    for disk in domain.iterfind("devices/disk"):
        dev = _read_disk(disk, controllers, storage_meta)
        if dev is not None:
            guest.storage.append(dev)
    network_meta = _meta_items(meta, "network")
    for iface in domain.iterfind("devices/interface"):
        guest.networks.append(_read_interface(iface, network_meta))
    return guest


def read_saved_domain(text: str | bytes) -> Guest | None:
    """The guest in a file libvirt keeps: a definition (`<domain>`) or a running
    domain's status (`<domstatus>` around its live `<domain>`); None for anything else."""
    try:
        root = parse_xml(text)
    except etree.XMLSyntaxError:
        return None
    domain = root.find("domain") if root.tag == "domstatus" else root
    if domain is None or domain.tag != "domain":
        return None
    return read_domain(domain)


def nvram_path(xml: str | bytes | etree._Element) -> str | None:
    """The file holding a domain's UEFI variables (`<os><nvram>`), if it has one."""
    text = parse_xml(xml).findtext("os/nvram")
    return text.strip() if text and text.strip() else None


def is_hpvm_guest(xml: str | bytes | etree._Element) -> bool:
    """Does the domain carry our metadata (made by hpvmcreate or the agent)?"""
    return parse_xml(xml).find(f"metadata/{{{NS}}}guest") is not None


def interface_taps(xml: str | bytes | etree._Element) -> dict[str, str]:
    """MAC -> host tap device of a running domain's interfaces."""
    found = {}
    for iface in parse_xml(xml).iterfind("devices/interface"):
        mac, target = iface.find("mac"), iface.find("target")
        if mac is not None and target is not None and target.get("dev"):
            found[mac.get("address").lower()] = target.get("dev")
    return found


def _read_disk(
    disk: etree._Element,
    controllers: dict[int, etree._Element],
    meta: dict[str, etree._Element],
) -> StorageDevice | None:
    kind = disk.get("device", "disk")
    if kind not in ("disk", "cdrom", "lun"):
        return None
    device = DeviceType.DVD if kind == "cdrom" else DeviceType.DISK
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
        ctl = controllers.get(_int(address.get("controller")) if address is not None else 0)
        model = ctl.get("model") if ctl is not None else None
        adapter = Adapter.AVIO_STOR if model in AVIO_CONTROLLERS else Adapter.SCSI
        bus, slot = _hpvm_slot(ctl) if ctl is not None else (None, None)
        target = None
        if address is not None:
            target = _int(address.get("target" if adapter is Adapter.AVIO_STOR else "unit"))
    else:
        adapter = Adapter.AVIO_STOR if bus_kind == "virtio" else Adapter.SCSI
        bus, slot = _hpvm_slot(disk)
        target = None
    requested = item.get("statement") if item is not None else None
    return StorageDevice(device, adapter, storage, location, bus, slot, target, requested=requested)


def _read_interface(iface: etree._Element, meta: dict[str, etree._Element]) -> NetworkDevice:
    model = iface.find("model")
    adapter = (
        Adapter.AVIO_LAN if model is not None and model.get("type") == "virtio" else Adapter.LAN
    )
    source = iface.find("source")
    vswitch = ""
    if source is not None:
        vswitch = source.get("bridge") or source.get("network") or source.get("dev") or ""
    mac = iface.find("mac")
    bus, slot = _hpvm_slot(iface)
    alias = iface.find("alias")
    item = meta.get(alias.get("name")) if alias is not None else None
    portid = item.get("portid") if item is not None else None
    return NetworkDevice(
        adapter=adapter,
        vswitch=vswitch,
        bus=bus,
        slot=slot,
        mac=mac.get("address").lower() if mac is not None else None,
        portid=int(portid) if portid is not None else None,
        requested=item.get("statement") if item is not None else None,
    )
