"""Guest-wide settings (vCPUs, memory, OS type, label, autoboot): persistent, next start."""

from __future__ import annotations

from dataclasses import dataclass, fields

import libvirt
from lxml import etree

from agent.connection import libvirt_message
from agent.errors import HostError
from agent.guests.inventory import config_guest
from translators.render import render_metadata
from translators.validate import check_guest


@dataclass
class GuestSettings:
    """What to change; None leaves a setting as it is."""

    vcpus: int | None = None
    memory_mb: int | None = None
    os_type: str | None = None
    label: str | None = None
    autoboot: bool | None = None


def apply_settings(conn: libvirt.virConnect, dom: libvirt.virDomain, wanted: GuestSettings) -> bool:
    """Redefine the persistent domain with the settings; True when something changed."""
    guest = config_guest(dom)
    changed = False
    for item in fields(wanted):
        value = getattr(wanted, item.name)
        if value is not None and getattr(guest, item.name) != value:
            setattr(guest, item.name, value)
            changed = True
    if not changed:
        return False
    check_guest(guest)
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    root.find("vcpu").text = str(guest.vcpus)
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        if element is not None:
            element.set("unit", "MiB")
            element.text = str(guest.memory_mb)
    if guest.label is not None:
        title = root.find("title")
        if title is None:
            title = etree.Element("title")
            root.find("name").addnext(title)
        title.text = guest.label
    meta = root.find("metadata")
    if meta is None:
        meta = etree.SubElement(root, "metadata")
    fresh = render_metadata(guest)
    for old in meta.findall(fresh.tag):
        meta.remove(old)
    meta.append(fresh)
    try:
        conn.defineXML(etree.tostring(root, encoding="unicode"))
        dom.setAutostart(1 if guest.autoboot else 0)
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    return True
