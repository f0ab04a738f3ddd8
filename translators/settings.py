"""Guest-wide settings (vCPUs, memory, OS type, label, autoboot) in a persistent domain (pure)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from lxml import etree

from translators.model import Guest
from translators.readback import parse_xml
from translators.render import render_metadata


@dataclass
class GuestSettings:
    """What to change; None leaves a setting as it is."""

    vcpus: int | None = None
    memory_mb: int | None = None
    os_type: str | None = None
    label: str | None = None
    autoboot: bool | None = None


def with_settings(guest: Guest, wanted: GuestSettings) -> Guest | None:
    """A copy of `guest` with the `wanted` settings, or None when none of them changes it."""
    changes = {
        item.name: value
        for item in dataclasses.fields(wanted)
        if (value := getattr(wanted, item.name)) is not None and getattr(guest, item.name) != value
    }
    if not changes:
        return None
    changed = copy.deepcopy(guest)
    for name, value in changes.items():
        setattr(changed, name, value)
    return changed


def settings_xml(domain_xml: str, guest: Guest) -> str:
    """`domain_xml` (a persistent definition) with `guest`'s vCPUs, memory, label, metadata.

    Everything else in the definition (devices, libvirt's own additions) stays as it is.
    """
    root = parse_xml(domain_xml)
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
    return etree.tostring(root, encoding="unicode")
