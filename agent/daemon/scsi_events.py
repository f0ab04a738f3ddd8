"""Attached SCSI devices (udev `scsi_device` events): a device that leaves the host is
unplugged from its running guest (kept in the definition), and plugged back when it
returns, found by its identity (wwid, else vendor/model/serial): its H:C:T:L may be
new, and then the definition follows it.

Any add or remove of a SCSI device queues a `ScsiSync` for each running guest that
has attached devices; the sync compares the guest with the host, so a lost or
repeated event changes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import libvirt

from agent.daemon import metrics
from agent.daemon.index import running_domain
from agent.daemon.sources import ScsiEvent
from agent.daemon.work import ScsiSync
from agent.devices import scsi
from agent.guests.inventory import HostView
from agent.guests.lifecycle import follow_moved
from agent.guests.removal import RemovalWatch
from translators.errors import HpvmError
from translators.readback import device_aliases, read_domain
from translators.render import device_xml

if TYPE_CHECKING:
    from agent.daemon.service import Agent

log = logging.getLogger("avio-agent")

UNPLUG_TIMEOUT = 30.0
LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


class ScsiHandlers:
    """The agent's handlers of SCSI device events."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def accept(self, event: ScsiEvent) -> None:
        """A SCSI device came or went: every running guest with attached devices syncs."""
        metrics.EVENTS.labels("scsi").inc()
        log.debug("scsi %s %s", event.action, event.hctl)
        self.sync_all(event.seen)

    def sync_all(self, seen: float | None = None) -> None:
        for dom in self.agent.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if "<hostdev" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE):
                self.agent.offer(ScsiSync(dom.name(), seen or time.monotonic()))

    def sync(self, work: ScsiSync) -> None:
        """Unplug the guest's attached devices that left the host; plug back the ones
        its definition has that are there again."""
        conn = self.agent.conn
        dom = running_domain(conn, work.guest)
        if dom is None:
            return
        live_xml = dom.XMLDesc(0)
        for dev in scsi.attached(read_domain(live_xml)):
            if not scsi.present(dev):
                self._unplug(dom, dev, work.seen)
        live_aliases = device_aliases(dom.XMLDesc(0))
        defined = read_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        missing = [d for d in scsi.attached(defined) if d.alias not in live_aliases]
        if missing:
            claims = HostView(conn).claims(exclude=work.guest)
            for dev in missing:
                self._plug(dom, dev, defined, claims, work.seen)

    def _unplug(self, dom: libvirt.virDomain, dev, seen: float) -> None:
        with RemovalWatch(self.agent.conn, dom) as watch:
            dom.detachDeviceFlags(device_xml(dev), LIVE)
            watch.wait(dev.alias, UNPLUG_TIMEOUT)
        self.agent.devices_changed(dom.name())
        metrics.HOTPLUGS.labels("detach").inc()
        log.info(
            "unplug guest=%s scsi=%s %s: host device %s is gone (kept in the definition) "
            "in %.1f ms",
            dom.name(),
            dev.alias,
            dev.location,
            dev.host,
            (time.monotonic() - seen) * 1e3,
        )

    def _plug(self, dom: libvirt.virDomain, dev, defined, claims, seen: float) -> None:
        old_xml = device_xml(dev) if dev.host else None
        try:
            found = scsi.returning(dev, claims)
        except HpvmError as err:
            metrics.FAILED.labels("replug").inc()
            log.error("plug guest=%s scsi=%s refused: %s", dom.name(), dev.alias, err)
            return
        if found is None:
            return
        xml = device_xml(dev)
        if old_xml is not None and xml != old_xml:  # back at another address: follow it
            follow_moved(dom, [(old_xml, xml)], defined, LIVE)
        dom.attachDeviceFlags(xml, LIVE)
        self.agent.devices_changed(dom.name())
        metrics.HOTPLUGS.labels("attach").inc()
        log.info(
            "plug guest=%s scsi=%s %s: host device is back at %s in %.1f ms",
            dom.name(),
            dev.alias,
            dev.location,
            found.hctl,
            (time.monotonic() - seen) * 1e3,
        )
