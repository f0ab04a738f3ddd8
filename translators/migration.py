"""Migration facts kept in a domain's metadata, and what a migration may not carry.

A guest migrated away without HPVM's -D keeps its definition on the source,
marked not runnable (HPVM's runnable_status=disabled), so that it is not
started twice: `<avio-migration:runnable state="disabled" reason="..."/>`
under our migration namespace, beside (never inside) the guest's own metadata.
"""

from __future__ import annotations

from lxml import etree

from translators.readback import parse_xml

NS = "urn:avio-kvm:migration:1"
PREFIX = "avio-migration"


def render_not_runnable(reason: str) -> str:
    """The metadata element that marks a definition not runnable, with why.

    Without a namespace: libvirt's setMetadata puts it in NS under PREFIX.
    """
    element = etree.Element("runnable", state="disabled")
    element.set("reason", reason)
    return etree.tostring(element, encoding="unicode")


def not_runnable_reason(metadata: str | None) -> str | None:
    """Why a definition is not runnable (from render_not_runnable's element), else None."""
    if not metadata:
        return None
    element = parse_xml(metadata)
    if etree.QName(element).localname != "runnable" or element.get("state") != "disabled":
        return None
    return element.get("reason") or "not runnable"


def passthrough_devices(xml: str) -> list[str]:
    """Devices a migration cannot carry: host devices passed through (PCI, SCSI, USB)."""
    domain = parse_xml(xml)
    found = []
    for hostdev in domain.iterfind("devices/hostdev"):
        found.append(f"hostdev {hostdev.get('type', '?')}")
    found += ["interface hostdev"] * len(domain.findall("devices/interface[@type='hostdev']"))
    return found


def domain_not_runnable(xml: str) -> str | None:
    """Why a domain (its whole XML, as the qemu hook gets it) may not start here, else None."""
    element = parse_xml(xml).find(f"metadata/{{{NS}}}runnable")
    if element is None:
        return None
    return not_runnable_reason(etree.tostring(element, encoding="unicode"))
