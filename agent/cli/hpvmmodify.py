"""`hpvmmodify`: change a guest; devices change live on a running guest and persist."""

from __future__ import annotations

import sys

import libvirt
from lxml import etree

from agent.apply import Applier
from agent.cli.common import EXIT_OK, connect, run, warn
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.hostcheck import check_backing
from agent.inventory import claims, config_guest, lookup
from translators.errors import Warnings
from translators.model import StorageDevice
from translators.options import modify_parser, statements
from translators.plan import Action, plan_modify
from translators.render import render_domain, render_metadata, to_string
from translators.validate import check_guest

PROG = "hpvmmodify"


def _redefine_settings(conn, dom, options) -> bool:
    """-c/-r/-O/-B/-l: change the persistent definition. True when something changed."""
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    root = etree.fromstring(xml.encode())
    guest = config_guest(dom)
    changed = False
    for attr, value in [
        ("vcpus", options.vcpus),
        ("memory_mb", options.memory),
        ("os_type", options.os_type),
        ("label", options.label),
    ]:
        if value is not None:
            setattr(guest, attr, value)
            changed = True
    if options.boot_attr is not None:
        guest.autoboot = options.boot_attr == "auto"
        changed = True
    if not changed:
        return False
    check_guest(guest)
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


def modify(argv: list[str]) -> int:
    options = modify_parser().parse_args(argv)
    warnings = Warnings()
    add = statements(options.add, warnings)
    delete = statements(options.delete, warnings)
    change = statements(options.modify, warnings)
    warn(PROG, warnings)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    before = config_guest(dom)
    after, changes = plan_modify(before, add, delete, change, claims(conn, exclude=before.name))
    for item in changes:
        if item.action is not Action.DETACH and isinstance(item.device, StorageDevice):
            check_backing(item.device)
    if options.print_xml:
        sys.stdout.write(to_string(render_domain(after, before.virt_type or "qemu")))
        return EXIT_OK
    if changes:
        Applier(conn, dom).apply(before, changes, after)
    if _redefine_settings(conn, dom, options) and dom.isActive():
        warn(PROG, ["vCPU, memory and boot settings take effect at the next start"])
    return EXIT_OK


COMMAND = modify


def main() -> None:
    sys.exit(run(PROG, COMMAND))
