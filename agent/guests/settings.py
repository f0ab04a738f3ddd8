"""Guest-wide settings (vCPUs, memory, OS type, label, autoboot): persistent, next start."""

from __future__ import annotations

import libvirt

from agent.connection import libvirt_message
from agent.errors import HostError
from translators.readback import read_domain
from translators.settings import GuestSettings, settings_xml, with_settings
from translators.validate import check_guest

__all__ = ["GuestSettings", "apply_settings"]


def apply_settings(conn: libvirt.virConnect, dom: libvirt.virDomain, wanted: GuestSettings) -> bool:
    """Redefine the persistent domain with the settings; True when something changed."""
    if wanted == GuestSettings():
        return False  # nothing asked: nothing to read
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    guest = with_settings(read_domain(xml), wanted)
    if guest is None:
        return False
    check_guest(guest)
    try:
        conn.defineXML(settings_xml(xml, guest))
        dom.setAutostart(1 if guest.autoboot else 0)
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    return True
