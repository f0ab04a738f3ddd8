"""libvirt domain XML -> guest model.

Reads our own domains exactly (model -> XML -> model is the identity) and
domains written by hand or by virt-install as well as it can: virtio disks
and NICs read as AVIO, everything else as VIO.
"""

from __future__ import annotations

from collections.abc import Collection

from lxml import etree

from translators.devices import registry
from translators.devices.base import NS, xml_int
from translators.errors import HpvmError
from translators.model import BootExtension, Device, Guest

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


def parse_xml(xml: str | bytes | etree._Element) -> etree._Element:
    if isinstance(xml, etree._Element):
        return xml
    if isinstance(xml, str):
        xml = xml.encode()
    return etree.fromstring(xml, etree.XMLParser(remove_blank_text=True, resolve_entities=False))


def _memory_mb(domain: etree._Element) -> int:
    memory = domain.find("memory")
    if memory is None or not memory.text:
        return 0
    unit = memory.get("unit", "KiB").lower()
    return round(int(memory.text) * MEMORY_UNITS_KIB[unit] / 1024)


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


def read_domain(
    xml: str | bytes | etree._Element, kinds: Collection[type[Device]] | None = None
) -> Guest:
    """The guest model of a domain XML (with `kinds`: only devices of those kinds)."""
    domain = parse_xml(xml)
    meta = domain.find(f"metadata/{{{NS}}}guest")
    guest = Guest(
        name=domain.findtext("name", ""),
        os_type=_os_type(domain, meta),
        vcpus=xml_int(domain.findtext("vcpu"), 1),
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
    elements: dict[type[Device], list[etree._Element]] = {}
    tags = None if kinds is None else {tag for kind in kinds for tag in kind.read_tags()}
    for element in domain.iterfind("devices/*"):
        if tags is not None and element.tag not in tags:
            continue  # no kind asked for reads it
        kind = registry.kind_reading(element)
        if kind is not None and (kinds is None or kind in kinds):
            elements.setdefault(kind, []).append(element)
    for kind, found in elements.items():
        guest.of_kind(kind).extend(kind.read_all(found, domain, meta))
    return guest


def read_device(element: etree._Element, domain: etree._Element | None = None) -> Device:
    """The device of one `<devices>` child; an element no kind reads is refused."""
    kind = registry.kind_reading(element)
    if kind is None:
        raise HpvmError(f"no device kind reads <{element.tag}>")
    if domain is None:
        domain = element.getroottree().getroot()
    meta = domain.find(f"metadata/{{{NS}}}guest")
    return kind.read_all([element], domain, meta)[0]


def read_saved_domain(
    text: str | bytes, kinds: Collection[type[Device]] | None = None
) -> Guest | None:
    """The guest in a file libvirt keeps: a definition (`<domain>`) or a running
    domain's status (`<domstatus>` around its live `<domain>`); None for anything else.
    With `kinds`, only devices of those kinds are read."""
    try:
        root = parse_xml(text)
    except etree.XMLSyntaxError:
        return None
    domain = root.find("domain") if root.tag == "domstatus" else root
    if domain is None or domain.tag != "domain":
        return None
    return read_domain(domain, kinds)


def nvram_path(xml: str | bytes | etree._Element) -> str | None:
    """The file holding a domain's UEFI variables (`<os><nvram>`), if it has one."""
    text = parse_xml(xml).findtext("os/nvram")
    return text.strip() if text and text.strip() else None


def is_hpvm_guest(xml: str | bytes | etree._Element) -> bool:
    """Does the domain carry our metadata (made by hpvmcreate or the agent)?"""
    return parse_xml(xml).find(f"metadata/{{{NS}}}guest") is not None


def device_aliases(xml: str | bytes | etree._Element) -> set[str]:
    """The aliases of a domain's devices."""
    return {a.get("name") for a in parse_xml(xml).iterfind("devices/*/alias")}


def bridge_buses(xml: str | bytes | etree._Element) -> set[int]:
    """The PCI buses a domain's pci-bridge controllers make."""
    root = parse_xml(xml)
    return {int(c.get("index")) for c in root.iterfind("devices/controller[@model='pci-bridge']")}


def interface_taps(xml: str | bytes | etree._Element) -> dict[str, str]:
    """MAC -> host tap device of a running domain's interfaces."""
    found = {}
    for iface in parse_xml(xml).iterfind("devices/interface"):
        mac, target = iface.find("mac"), iface.find("target")
        if mac is not None and target is not None and target.get("dev"):
            found[mac.get("address").lower()] = target.get("dev")
    return found
