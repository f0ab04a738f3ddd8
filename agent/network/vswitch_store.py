"""vswitch definitions, kept by libvirt as bridge-mode networks with our metadata."""

from __future__ import annotations

import libvirt

from agent.connection import libvirt_message
from agent.errors import HostError
from translators.vswitch import VSwitch, read_network, render_network


def all_vswitches(conn: libvirt.virConnect) -> list[VSwitch]:
    """Every vswitch; a network removed meanwhile (by another command) is skipped."""
    found = []
    for net in conn.listAllNetworks():
        try:
            xml = net.XMLDesc(0)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                continue
            raise
        v = read_network(xml)
        if v is not None:
            found.append(v)
    return sorted(found, key=lambda v: v.number)


def save(conn: libvirt.virConnect, v: VSwitch) -> None:
    """Write the definition (a persistent libvirt network in bridge mode)."""
    try:
        uuid = conn.networkLookupByName(v.name).UUIDString()
    except libvirt.libvirtError:
        uuid = None  # a new network
    try:
        conn.networkDefineXML(render_network(v, uuid))  # a redefinition keeps the UUID
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None


def undefine(conn: libvirt.virConnect, name: str) -> None:
    conn.networkLookupByName(name).undefine()
