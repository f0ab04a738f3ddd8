"""Apply a planned change list to a domain through libvirt, live and persistent.

A running guest gets each change live and in its persistent config; a stopped
one only in the config. An unplug waits for the guest to release the device
(DEVICE_REMOVED) before the config is touched. If a step fails, the steps
already done are undone, so no command leaves a half-applied change.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt
from lxml import etree

from agent.connection import libvirt_message
from agent.errors import HostError
from agent.guests.removal import RemovalWatch
from translators.model import Adapter, Device, Guest, NetworkDevice, StorageDevice, StorageType
from translators.plan import Action, Change, matches
from translators.readback import read_domain
from translators.render import (
    NS,
    NS_PREFIX,
    nic_alias,
    render_bridge,
    render_controller,
    render_disk,
    render_interface,
    render_metadata,
    storage_alias,
)

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
UNPLUG_TIMEOUT = 30.0


def device_xml(device: Device) -> str:
    element = render_disk(device) if isinstance(device, StorageDevice) else render_interface(device)
    return etree.tostring(element, encoding="unicode")


def alias_of(device: Device) -> str:
    return storage_alias(device) if isinstance(device, StorageDevice) else nic_alias(device)


def with_link(xml: str, state: str) -> str:
    """An interface's XML with its link `up` or `down`."""
    iface = etree.fromstring(xml.encode())
    etree.SubElement(iface, "link", state=state)
    return etree.tostring(iface, encoding="unicode")


def _bridges(xml: str) -> set[int]:
    root = etree.fromstring(xml.encode())
    return {int(c.get("index")) for c in root.iterfind("devices/controller[@model='pci-bridge']")}


def _aliases(xml: str) -> set[str]:
    root = etree.fromstring(xml.encode())
    return {a.get("name") for a in root.iterfind("devices/*/alias")}


class Applier:
    """Applies changes to one domain, remembering how to undo them."""

    def __init__(
        self,
        conn: libvirt.virConnect,
        dom: libvirt.virDomain,
        port_rule: Callable[[NetworkDevice], None] | None = None,
    ) -> None:
        """`port_rule`, if given, sets a plugged NIC's vswitch port rule before its link is up."""
        self.conn = conn
        self.dom = dom
        self.port_rule = port_rule
        self.live = bool(dom.isActive())
        self.flags = CONFIG | (LIVE if self.live else 0)
        self._undo: list[tuple[str, str, int]] = []  # (method, xml, flags)

    def _call(self, method: str, xml: str, flags: int) -> None:
        getattr(self.dom, method)(xml, flags)

    def _attach(self, xml: str) -> None:
        self._call("attachDeviceFlags", xml, self.flags)
        self._undo.append(("detachDeviceFlags", xml, self.flags))

    def _attach_nic_gated(self, nic: NetworkDevice) -> None:
        """Plug a NIC into the running guest with its link down, set its port rule, link up.

        The guest cannot send a frame before its port enforces the VLAN.
        """
        assert self.port_rule is not None
        xml = device_xml(nic)
        down = with_link(xml, "down")
        self._call("attachDeviceFlags", down, LIVE)
        self._undo.append(("detachDeviceFlags", down, LIVE))
        self._call("attachDeviceFlags", xml, CONFIG)
        self._undo.append(("detachDeviceFlags", xml, CONFIG))
        self.port_rule(nic)
        self._call("updateDeviceFlags", with_link(xml, "up"), LIVE)

    def _ensure_bridge(self, bus: int | None) -> None:
        if not bus:
            return
        if self.live and bus not in _bridges(self.dom.XMLDesc(0)):
            raise HostError(
                f"PCI bus {bus} does not exist in the running guest (a bus is created at "
                "start); stop the guest or use bus 0"
            )
        if bus not in _bridges(self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
            self._call(
                "attachDeviceFlags", etree.tostring(render_bridge(bus), encoding="unicode"), CONFIG
            )

    def _detach(self, device: Device, watch: RemovalWatch) -> None:
        """Unplug live (when the running guest has it), then from the definition; each
        step's undo is recorded as soon as the step is done."""
        xml = device_xml(device)
        if self.live and self._plugged(device):
            self._call("detachDeviceFlags", xml, LIVE)
            watch.wait(alias_of(device), UNPLUG_TIMEOUT)
            self._undo.append(("attachDeviceFlags", xml, LIVE))
        self._call("detachDeviceFlags", xml, CONFIG)
        self._undo.append(("attachDeviceFlags", xml, CONFIG))

    def _plugged(self, device: Device) -> bool:
        """Does the running guest have the device? (Not when it was unplugged live and
        the definition kept it, e.g. libvirtd went away between the two steps.)"""
        xml = self.dom.XMLDesc(0)
        if alias_of(device) in _aliases(xml):
            return True
        return any(matches(device, d) for d in read_domain(xml).devices)

    def _update(self, device: Device, old_xml: str) -> None:
        self._call("updateDeviceFlags", device_xml(device), self.flags)
        self._undo.append(("updateDeviceFlags", old_xml, self.flags))

    def _preflight(self, changes: list[Change]) -> None:
        """Refuse, before touching anything, what libvirt 9.0 cannot do live."""
        if not self.live:
            return
        for change in changes:
            device = change.device
            if isinstance(device, StorageDevice) and device.adapter is Adapter.SCSI:
                raise HostError(
                    "the emulated LSI SCSI adapter (VIO scsi) cannot hot-plug: the guest would "
                    "not see the change; stop the guest first, or use avio_stor"
                )
            if (
                change.action is Action.ATTACH
                and isinstance(device, StorageDevice)
                and device.storage is StorageType.NULL
            ):
                raise HostError(
                    "an empty DVD cannot be hot-plugged into a running guest (libvirt needs "
                    "media to plug a cdrom); add it with media (dvd:...:file:ISO) or while "
                    "the guest is stopped"
                )

    def apply(self, before: Guest, changes: list[Change], after: Guest) -> None:
        """Apply all changes and the new metadata, or none of them."""
        self._preflight(changes)
        old_xml = {alias_of(d): device_xml(d) for d in before.devices}
        try:
            with RemovalWatch(self.conn, self.dom) as watch:
                for change in changes:
                    device = change.device
                    if change.action is Action.DETACH:
                        self._detach(device, watch)
                    elif change.action is Action.UPDATE:
                        self._update(device, old_xml[alias_of(device)])
                    else:
                        self._ensure_bridge(device.bus)
                        if change.new_controller:
                            assert isinstance(device, StorageDevice)
                            ctl = render_controller(device.adapter, device.bus, device.slot)
                            self._attach(etree.tostring(ctl, encoding="unicode"))
                        if isinstance(device, NetworkDevice) and self.live and self.port_rule:
                            self._attach_nic_gated(device)
                        else:
                            self._attach(device_xml(device))
            self.set_metadata(after)
        except libvirt.libvirtError as err:
            self.rollback()
            message = libvirt_message(err)
            if "is not open" in message and "Tray" in message:
                message = (
                    "the media of a DVD hot-plugged into this running guest can only change "
                    f"after the guest restarts (libvirt 9.0 does not track its tray): {message}"
                )
            raise HostError(message) from None
        except HostError:
            self.rollback()
            raise

    def rollback(self) -> None:
        for method, xml, flags in reversed(self._undo):
            try:
                self._call(method, xml, flags)
            except libvirt.libvirtError:
                pass
        self._undo.clear()

    def set_metadata(self, guest: Guest) -> None:
        # libvirt adds the namespace itself (prefix and URI given below); the
        # element it is handed must carry none.
        element = render_metadata(guest)
        for item in element.iter():
            item.tag = etree.QName(item).localname
        etree.cleanup_namespaces(element)
        xml = etree.tostring(element, encoding="unicode")
        self.dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, NS_PREFIX, NS, self.flags)
