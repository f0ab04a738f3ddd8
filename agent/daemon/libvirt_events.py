"""libvirt's domain events: a guest (re)started, a device plugged or unplugged."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libvirt

from agent.daemon import metrics
from agent.daemon.index import running_domain
from agent.daemon.sources import Put
from agent.daemon.work import ApplyPorts, ReconcileGuest, Replug, ResizeDisks, ScsiSync
from agent.guests.inventory import HostView
from agent.network import vswitches

if TYPE_CHECKING:
    from agent.daemon.service import Agent


@dataclass(frozen=True)
class DomainEvent:
    """Something happened to a domain (started, stopped, device added/removed)."""

    name: str
    started: bool
    nic_added: bool = False


def subscribe(conn: libvirt.virConnect, put: Put) -> None:
    """Have libvirt's lifecycle, device and metadata events of every domain put as
    DomainEvents (each makes what the agent keeps of that guest stale)."""

    def on_lifecycle(_conn, dom, event: int, _detail: int, _opaque) -> None:
        put(DomainEvent(dom.name(), event == libvirt.VIR_DOMAIN_EVENT_STARTED))

    def on_device_removed(_conn, dom, _alias: str, _opaque) -> None:
        put(DomainEvent(dom.name(), False))

    def on_metadata_change(_conn, dom, _type: int, _nsuri: str | None, _opaque) -> None:
        put(DomainEvent(dom.name(), False))  # e.g. a NIC's vswitch port (our metadata)

    def on_device_added(_conn, dom, _alias: str, _opaque) -> None:
        # Any device may be a NIC: an alias is whatever its plugger chose (virsh
        # attach-interface --alias ua-eth1), so every plug re-checks the guest's port rules.
        put(DomainEvent(dom.name(), False, nic_added=True))

    for event_id, callback in (
        (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle),
        (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, on_device_added),
        (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_device_removed),
        (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, on_metadata_change),
    ):
        conn.domainEventRegisterAny(None, event_id, callback, None)


class LibvirtHandlers:
    """The agent's handlers of libvirt's domain events."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def accept(self, event: DomainEvent) -> None:
        """Any domain event may change disks: the index is stale; a start or a plug
        queues the guest's reconciliation or its port rules."""
        metrics.EVENTS.labels("libvirt").inc()
        self.agent.devices_changed(event.name)
        if event.started:
            self.agent.offer(ReconcileGuest(event.name))
        elif event.nic_added:
            self.agent.offer(ApplyPorts(event.name))

    def reconcile_domain(self, work: ReconcileGuest) -> None:
        """A guest (re)started: each NIC gets its port's VLAN, then its missing disks are
        plugged back and each disk gets its device's size (queued, in that order)."""
        dom = running_domain(self.agent.conn, work.guest)
        if dom is None:
            return
        vswitches.apply_guest(HostView(self.agent.conn), dom)
        self.agent.offer(Replug(work.guest))
        self.agent.offer(ResizeDisks(work.guest))
        if "<hostdev" in dom.XMLDesc(0):  # attached SCSI devices gone meanwhile
            self.agent.offer(ScsiSync(work.guest, time.monotonic()))

    def apply_ports(self, work: ApplyPorts) -> None:
        """A NIC was plugged (by anyone): every NIC of the guest gets its port's VLAN rule."""
        dom = running_domain(self.agent.conn, work.guest)
        if dom is not None:
            vswitches.apply_guest(HostView(self.agent.conn), dom)
