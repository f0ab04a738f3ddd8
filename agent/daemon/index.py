"""Which running guest disks sit on which host block device (by device number)."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from agent.storage.hostcheck import device_number as devnum_of
from translators.live import block_disks


@dataclass(frozen=True)
class DiskRef:
    """One disk of one running guest, backed by a host block device."""

    guest: str
    target: str  # libvirt target dev, e.g. "sdd"
    source: str  # the path as the domain names it


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


def running_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The guest `name` if it exists and runs, else None."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    return dom if dom.isActive() else None
