"""vswitch definitions, kept by libvirt as bridge-mode networks with our metadata."""

from __future__ import annotations

import libvirt

from agent.connection import libvirt_message
from agent.errors import HostError
from translators.errors import HpvmError
from translators.model import NetworkDevice
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


def get(conn: libvirt.virConnect, name: str) -> VSwitch:
    for v in all_vswitches(conn):
        if v.name == name:
            return v
    raise HpvmError(f"no vswitch named '{name}'")


def find(conn: libvirt.virConnect, name: str) -> VSwitch | None:
    return next((v for v in all_vswitches(conn) if v.name == name), None)


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


def local_vswitches(conn: libvirt.virConnect) -> set[str]:
    """vswitches with no uplink (like HPVM's localnet): VIO lan only."""
    return {v.name for v in all_vswitches(conn) if not v.uplink}


def managed(conn: libvirt.virConnect, nics: list[NetworkDevice]) -> bool:
    """Is any of these NICs on a vswitch defined with hpvmnet?"""
    names = {v.name for v in all_vswitches(conn)}
    return any(nic.vswitch in names for nic in nics)
