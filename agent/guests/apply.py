"""Apply a planned change list to a domain through libvirt, live and persistent.

A running guest gets each change live and in its persistent config; a stopped
one only in the config. An unplug waits for the guest to release the device
(DEVICE_REMOVED) before the config is touched. If a step fails, the steps
already done are undone, so no command leaves a half-applied change.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt

from agent.connection import libvirt_message
from agent.errors import HostError
from agent.guests.removal import UNPLUG_TIMEOUT, RemovalWatch
from translators.model import Device, Guest
from translators.plan import Action, Change, plugged
from translators.readback import bridge_buses
from translators.render import NS, NS_PREFIX, bridge_xml, metadata_element_xml, with_link

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


class Applier:
    """Applies changes to one domain, remembering how to undo them."""

    def __init__(
        self,
        conn: libvirt.virConnect,
        dom: libvirt.virDomain,
        port_rule: Callable[[Device], None] | None = None,
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

    def _attach_gated(self, change: Change) -> None:
        """Plug a NIC into the running guest with its link down, set its port rule, link up.

        The guest cannot send a frame before its port enforces the VLAN.
        """
        assert self.port_rule is not None
        xml = change.xml
        down = with_link(xml, "down")
        self._call("attachDeviceFlags", down, LIVE)
        self._undo.append(("detachDeviceFlags", down, LIVE))
        self._call("attachDeviceFlags", xml, CONFIG)
        self._undo.append(("detachDeviceFlags", xml, CONFIG))
        self.port_rule(change.device)
        self._call("updateDeviceFlags", with_link(xml, "up"), LIVE)

    def _ensure_bridge(self, bus: int | None) -> None:
        if not bus:
            return
        if self.live and bus not in bridge_buses(self.dom.XMLDesc(0)):
            raise HostError(
                f"PCI bus {bus} does not exist in the running guest (a bus is created at "
                "start); stop the guest or use bus 0"
            )
        if bus not in bridge_buses(self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
            self._call("attachDeviceFlags", bridge_xml(bus), CONFIG)

    def _detach(self, change: Change, watch: RemovalWatch) -> None:
        """Unplug live (when the running guest has it), then from the definition; each
        step's undo is recorded as soon as the step is done.

        Not when it was unplugged live and the definition kept it (e.g. libvirtd
        went away between the two steps).
        """
        xml = change.xml
        if self.live and plugged(self.dom.XMLDesc(0), change):
            self._call("detachDeviceFlags", xml, LIVE)
            watch.wait(change.alias, UNPLUG_TIMEOUT)
            self._undo.append(("attachDeviceFlags", xml, LIVE))
        self._call("detachDeviceFlags", xml, CONFIG)
        self._undo.append(("attachDeviceFlags", xml, CONFIG))

    def _update(self, change: Change) -> None:
        assert change.previous_xml is not None
        self._call("updateDeviceFlags", change.xml, self.flags)
        self._undo.append(("updateDeviceFlags", change.previous_xml, self.flags))

    def _preflight(self, changes: list[Change]) -> None:
        """Refuse, before touching anything, what libvirt 9.0 cannot do live."""
        if not self.live:
            return
        for change in changes:
            if change.live_refusal:
                raise HostError(change.live_refusal)

    def apply(self, changes: list[Change], after: Guest) -> None:
        """Apply all changes and the new metadata, or none of them."""
        self._preflight(changes)
        try:
            with RemovalWatch(self.conn, self.dom) as watch:
                for change in changes:
                    if change.action is Action.DETACH:
                        self._detach(change, watch)
                    elif change.action is Action.UPDATE:
                        self._update(change)
                    else:
                        self._ensure_bridge(change.device.bus)
                        if change.controller_xml is not None:
                            self._attach(change.controller_xml)
                        gated = change.device.ON_VSWITCH and self.live and self.port_rule
                        if gated:
                            self._attach_gated(change)
                        else:
                            self._attach(change.xml)
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
        xml = metadata_element_xml(guest)
        self.dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, NS_PREFIX, NS, self.flags)
