"""Which running guest disks sit on which host block device (by device number)."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt
from lxml import etree

from agent.storage.hostcheck import device_number as devnum_of


@dataclass(frozen=True)
class DiskRef:
    """One disk of one running guest, backed by a host block device."""

    guest: str
    target: str  # libvirt target dev, e.g. "sdd"
    source: str  # the path as the domain names it


def block_disks(xml: str) -> list[tuple[str, str]]:
    """(target dev, source path) of every block-backed disk in a domain XML."""
    root = etree.fromstring(xml.encode())
    found = []
    for disk in root.iterfind("devices/disk[@type='block']"):
        source, target = disk.find("source"), disk.find("target")
        if source is not None and source.get("dev") and target is not None:
            found.append((target.get("dev"), source.get("dev")))
    return found


def build_index(conn: libvirt.virConnect) -> dict[int, list[DiskRef]]:
    """Device number -> the running guests' disks on it, from their live XML."""
    index: dict[int, list[DiskRef]] = {}
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError:
            continue  # stopped meanwhile
        for target, source in block_disks(xml):
            number = devnum_of(source)
            if number is not None:
                index.setdefault(number, []).append(DiskRef(dom.name(), target, source))
    return index
