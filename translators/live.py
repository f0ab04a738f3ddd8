"""A running guest's disks, read from its domain XML (pure): what the agent needs to
forward sizes, unplug a disk whose backing went away and plug it back."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree


@dataclass(frozen=True)
class DiskXml:
    """One <disk> of a domain: its target, source path, alias and the element as text."""

    target: str
    source: str
    alias: str | None
    xml: str  # what attachDeviceFlags/detachDeviceFlags take


def _root(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def _attribute(disk: etree._Element, child: str, name: str) -> str | None:
    found = disk.find(child)
    return None if found is None else found.get(name)


def _disk(disk: etree._Element) -> DiskXml:
    return DiskXml(
        target=_attribute(disk, "target", "dev") or "",
        source=_attribute(disk, "source", "dev") or "",
        alias=_attribute(disk, "alias", "name"),
        xml=etree.tostring(disk, encoding="unicode"),
    )


def block_disks(xml: str) -> list[tuple[str, str]]:
    """(target dev, source path) of every block-backed disk in a domain XML."""
    found = []
    for disk in _root(xml).iterfind("devices/disk[@type='block']"):
        source, target = disk.find("source"), disk.find("target")
        if source is not None and source.get("dev") and target is not None:
            found.append((target.get("dev"), source.get("dev")))
    return found


def find_disk(xml: str, target: str) -> DiskXml | None:
    """The disk with target dev `target` (any type), None when the domain has none."""
    for disk in _root(xml).iterfind("devices/disk"):
        if _attribute(disk, "target", "dev") == target:
            return _disk(disk)
    return None


def missing_block_disks(persistent_xml: str, live_xml: str) -> list[DiskXml]:
    """Block disks of the persistent definition (with a source device) whose target is
    not among the running guest's block disks: unplugged, e.g. because the backing went
    away."""
    live = {target for target, _ in block_disks(live_xml)}
    missing = []
    for disk in _root(persistent_xml).iterfind("devices/disk[@type='block']"):
        target = _attribute(disk, "target", "dev")
        if target in live or not _attribute(disk, "source", "dev"):
            continue
        missing.append(_disk(disk))
    return missing
