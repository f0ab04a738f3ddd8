"""DIO functions (PCI uevents): a pooled function that leaves the host is unplugged from
its running guest, and plugged back when it returns.

When a function on vfio-pci is removed (`echo 1 > /sys/bus/pci/devices/X/remove`, a
surprise removal), the kernel asks QEMU to let go (vfio's request interrupt) and QEMU
asks the guest to unplug it: the `remove` uevent comes once the guest has. The agent
makes sure the running guest no longer has it (a live detach, waiting for
DEVICE_REMOVED, if it still does), keeps it in the definition, and logs it. When it
returns (`echo 1 > /sys/bus/pci/rescan`) its host driver takes it first: the agent
checks it again (pooled, not used by the host, the device database) and has libvirtd
bind it to vfio-pci (the agent's own /sys is read-only: ProtectKernelTunables), then
plugs it into the guests whose definition has it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import libvirt

from agent.daemon import metrics
from agent.daemon.sources import PciEvent
from agent.daemon.work import FunctionBack, FunctionGone
from agent.devices import dio, pci
from agent.errors import HostError
from agent.guests.inventory import config_guest
from agent.guests.removal import UNPLUG_TIMEOUT, RemovalWatch
from translators.errors import HpvmError
from translators.readback import read_domain
from translators.render import device_xml

if TYPE_CHECKING:
    from agent.daemon.service import Agent

log = logging.getLogger("avio-agent")

NODEDEV_WAIT = 20.0  # libvirt's node device list catches up with a rescan


def libvirt_binder(conn: libvirt.virConnect):
    """Bind a function to vfio-pci through libvirtd (virNodeDeviceDetachFlags)."""

    def bind(function: pci.Function) -> None:
        name = "pci_" + function.address.replace(":", "_").replace(".", "_")
        deadline = time.monotonic() + NODEDEV_WAIT
        while True:
            try:
                conn.nodeDeviceLookupByName(name).detachFlags("vfio", 0)
                return
            except libvirt.libvirtError as err:
                if time.monotonic() > deadline:
                    raise HostError(f"libvirt cannot bind {function.address}: {err}") from None
                time.sleep(0.2)

    return bind


class PciHandlers:
    """The agent's handlers of PCI uevents and of the work they lead to."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def accept(self, event: PciEvent) -> None:
        """`remove`/`add` of a function that a running guest's definition gives it."""
        if event.action not in ("add", "remove"):
            return
        work = FunctionGone if event.action == "remove" else FunctionBack
        for dom in self.agent.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            guest = config_guest(dom)
            if any(d.function == event.address for d in dio.dio_devices(guest.devices)):
                self.agent.offer(work(dom.name(), event.address, event.seen))

    def gone(self, work: FunctionGone) -> None:
        """The function left the host: the running guest must not have it (definition kept)."""
        conn = self.agent.conn
        dom = conn.lookupByName(work.guest)
        plugged = [
            d
            for d in dio.dio_devices(read_domain(dom.XMLDesc(0)).devices)
            if d.function == work.address
        ]
        for device in plugged:
            with RemovalWatch(conn, dom) as watch:
                dom.detachDeviceFlags(device_xml(device), libvirt.VIR_DOMAIN_AFFECT_LIVE)
                watch.wait(device.alias, UNPLUG_TIMEOUT)
            metrics.HOTPLUGS.labels("detach").inc()
        self.agent.devices_changed(dom.name())
        log.warning(
            "dio guest=%s function=%s gone from the host: unplugged%s (kept in the definition) "
            "%.1f ms after the event",
            work.guest,
            work.address,
            "" if plugged else " by the guest at the kernel's request",
            (time.monotonic() - work.seen) * 1e3,
        )

    def back(self, work: FunctionBack) -> None:
        """The function returned: checked, on vfio-pci, plugged into the guest again."""
        conn = self.agent.conn
        dom = conn.lookupByName(work.guest)
        if not dom.isActive():
            return
        wanted = [
            d for d in dio.dio_devices(config_guest(dom).devices) if d.function == work.address
        ]
        live = {d.function for d in dio.dio_devices(read_domain(dom.XMLDesc(0)).devices)}
        wanted = [d for d in wanted if d.function not in live]
        if not wanted:
            return
        try:
            dio.prepare(wanted, binder=libvirt_binder(conn))
        except (HpvmError, HostError) as err:
            log.warning(
                "dio guest=%s function=%s back on the host, not plugged: %s",
                work.guest,
                work.address,
                err,
            )
            return
        for device in wanted:
            dom.attachDeviceFlags(device_xml(device), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            metrics.HOTPLUGS.labels("attach").inc()
        self.agent.devices_changed(dom.name())
        log.info(
            "dio guest=%s function=%s back on the host: on vfio-pci and plugged in again "
            "%.1f ms after the event",
            work.guest,
            work.address,
            (time.monotonic() - work.seen) * 1e3,
        )
