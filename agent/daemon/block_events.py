"""Host block devices (udev events): sizes forwarded, gone disks unplugged, returning
ones plugged back.

Events of one device arriving within `debounce` of its first are coalesced, the
last action winning: the size is read from sysfs when the device is handled, so
a burst ends at its final size.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import libvirt

from agent.daemon import metrics
from agent.daemon.debounce import Debounce
from agent.daemon.index import DiskRef, devnum_of, running_domain
from agent.daemon.sizes import Verdict, decide, host_size
from agent.daemon.sources import BlockEvent
from agent.daemon.work import (
    ApplyConfig,
    BlockSettled,
    DeviceAppeared,
    DiskGone,
    Forward,
    Replug,
    ResizeDisks,
)
from agent.guests.removal import UNPLUG_TIMEOUT, RemovalWatch
from agent.storage.startcheck import check_replug
from translators.errors import HpvmError
from translators.live import block_disks, find_disk, missing_block_disks

if TYPE_CHECKING:
    from agent.daemon.service import Agent

log = logging.getLogger("avio-agent")


class BlockHandlers:
    """The agent's handlers of block-device events and of the work they lead to."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.pending: Debounce[BlockSettled] = Debounce()  # by device number
        self.known_size: dict[int, int] = {}  # device number -> its size, as last seen
        # (guest, source) -> the guest disk's size as the agent last read or set it. Used
        # instead of asking (blockInfo) only to grow, and only while the host device has
        # not shrunk since: a guest disk never exceeds its device's size at the time it
        # was sized, so with the device never smaller since, growing to its size now
        # cannot shrink the guest. Dropped when the device shrinks or goes, and whenever
        # the guest changes (restart, plug, unplug) or events may have been lost.
        self.capacity: dict[tuple[str, str], int] = {}

    # ---- debounce ---------------------------------------------------------------------

    def accept(self, event: BlockEvent) -> None:
        """Count a uevent and hold it until its device's debounce window ends."""
        metrics.EVENTS.labels("block").inc()
        held = self.pending.held(event.devnum)
        if held is None:
            due = event.seen + self.agent.options.debounce
        else:
            # the last action wins (remove then add = present); the first timestamp
            # stays (latency is measured from it)
            due, first = held[0], held[1].event
            event = BlockEvent(
                event.action, event.devnum, event.node, event.resize or first.resize, first.seen
            )
        self.pending.hold(event.devnum, due, BlockSettled(None, event))

    # ---- handlers ---------------------------------------------------------------------

    def handle_block(self, work: BlockSettled) -> None:
        """A block device changed, appeared or went away: bring the guests in line."""
        event, put = work.event, self.agent.offer
        size = host_size(event.devnum)
        previous = self.known_size.get(event.devnum)
        refs = self.agent.disks.refs(self.agent.conn, event.devnum)
        if previous is None or not size or size < previous:  # unknown, gone or shrunk
            for ref in refs:
                self.capacity.pop((ref.guest, ref.source), None)
        self.known_size[event.devnum] = size or 0
        if event.action == "remove" or not size:
            for ref in refs:
                put(DiskGone(ref.guest, ref, event))
            return
        for ref in refs:
            put(Forward(ref.guest, ref, size, event.seen))
        if not previous:  # first seen, or back from size 0 / removed
            put(DeviceAppeared(None, event.devnum))

    def forward(self, work: Forward) -> None:
        """Grow a running guest's disk to the host device's size (never shrink it).

        The size is read again when the guest's turn comes: the last size wins.
        """
        ref = work.ref
        number = devnum_of(ref.source)
        size = (host_size(number) if number is not None else None) or work.size
        capacity = None
        if number is not None and size >= self.known_size.get(number, size + 1):
            capacity = self.capacity.get((ref.guest, ref.source))  # no shrink seen since
        self._grow(self.agent.conn.lookupByName(ref.guest), ref, size, work.seen, capacity)

    def forget(self, guest: str | None = None) -> None:
        """What the agent knows of `guest`'s disk sizes (with None: of every guest's) is
        stale: they are asked for again."""
        if guest is None:
            self.capacity.clear()
            return
        for key in list(self.capacity):  # one C call: workers may add keys meanwhile
            if key[0] == guest:
                self.capacity.pop(key, None)

    def _grow(
        self,
        dom: libvirt.virDomain,
        ref: DiskRef,
        size: int,
        seen: float,
        capacity: int | None = None,
    ) -> None:
        """blockResize the guest's disk to `size` if that grows it; a shrink is refused.

        `capacity`: the guest disk's size as just read or as the agent knows it (only
        trusted for a grow; else it is asked for).
        """
        if capacity is None or size <= capacity:  # not known, or not a grow: ask
            metrics.LIBVIRT_CALLS.labels("blockInfo").inc()
            capacity = dom.blockInfo(ref.source)[0]
        key = (ref.guest, ref.source)
        self.capacity[key] = capacity
        verdict = decide(size, capacity)
        if verdict is Verdict.SHRINK:
            metrics.REFUSED.inc()
            log.error(
                "refused shrink guest=%s disk=%s %s: %d -> %d bytes (would destroy data)",
                ref.guest,
                ref.target,
                ref.source,
                capacity,
                size,
            )
            return
        if verdict is not Verdict.GROW:
            return
        metrics.LIBVIRT_CALLS.labels("blockResize").inc()
        self.capacity.pop(key, None)  # unknown if the call fails half-way
        # Named by its source, not its target: a disk put at that target since (by
        # hpvmmodify, say) is not this one, and libvirt then finds no disk to resize.
        dom.blockResize(ref.source, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        self.capacity[key] = size
        latency = time.monotonic() - seen
        metrics.LATENCY.observe(latency)
        metrics.FORWARDED.inc()
        log.info(
            "resize guest=%s disk=%s %s: %d -> %d bytes in %.1f ms",
            ref.guest,
            ref.target,
            ref.source,
            capacity,
            size,
            latency * 1e3,
        )

    def device_gone(self, work: DiskGone) -> None:
        """The backing device went away: unplug the disk from the running guest (or keep it)."""
        ref, conn = work.ref, self.agent.conn
        if self.agent.options.on_remove == "keep":
            log.warning(
                "backing %s of guest=%s disk=%s is gone; disk kept (--on-remove keep)",
                ref.source,
                ref.guest,
                ref.target,
            )
            return
        dom = conn.lookupByName(ref.guest)
        disk = find_disk(dom.XMLDesc(0), ref.target)
        if disk is None:
            return
        start = time.monotonic()
        with RemovalWatch(conn, dom) as watch:
            dom.detachDeviceFlags(disk.xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if disk.alias:
                watch.wait(disk.alias, UNPLUG_TIMEOUT)
        self.agent.devices_changed(ref.guest)
        metrics.HOTPLUGS.labels("detach").inc()
        log.info(
            "unplug guest=%s disk=%s: backing %s is gone (kept in the definition) in %.1f ms",
            ref.guest,
            ref.target,
            ref.source,
            (time.monotonic() - start) * 1e3,
        )

    def attach_appearing(self, work: DeviceAppeared) -> None:
        """A device appeared: plug it into running guests whose definition names it (an
        unplugged disk) and into guests whose config file waits for it.

        Only unplugged disks and config files waiting for a device are looked at, so the
        cost grows with neither the number of guests nor the number of config files.
        """
        devnum, put = work.devnum, self.agent.offer
        for guest in self.agent.disks.waiting_for(self.agent.conn, devnum):
            put(Replug(guest, devnum))
        waiting = self.agent.configs.waiting_for(lambda location: devnum_of(location) == devnum)
        for path in waiting:
            put(ApplyConfig(path.stem, path))

    def replug(self, work: Replug) -> None:
        """Disks of the persistent definition missing from the running guest whose backing
        exists again (unplugged earlier because it went away) are plugged back live."""
        conn = self.agent.conn
        dom = running_domain(conn, work.guest)
        if dom is None:
            return
        persistent = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        for disk in missing_block_disks(persistent, dom.XMLDesc(0)):
            number = devnum_of(disk.source)
            if number is None or work.devnum not in (None, number) or not host_size(number):
                continue
            try:
                check_replug(conn, dom, disk.source)
            except HpvmError as err:
                metrics.FAILED.labels("replug").inc()
                log.error("plug guest=%s disk=%s refused: %s", dom.name(), disk.target, err)
                continue
            dom.attachDeviceFlags(disk.xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            self.agent.devices_changed(work.guest)
            metrics.HOTPLUGS.labels("attach").inc()
            log.info(
                "plug guest=%s disk=%s: backing %s is back", dom.name(), disk.target, disk.source
            )

    def resize_disks(self, work: ResizeDisks) -> None:
        """Each block disk of the running guest gets its host device's size (here, in the
        guest's worker: a reconciliation queues one item per guest, not one per disk).

        The guest's disk sizes come from one block-stats call, not a blockInfo per disk.
        """
        dom = running_domain(self.agent.conn, work.guest)
        if dom is None:
            return
        metrics.LIBVIRT_CALLS.labels("domainListGetStats").inc()
        capacities = guest_capacities(self.agent.conn, dom)
        for target, source in block_disks(dom.XMLDesc(0)):
            number = devnum_of(source)
            size = host_size(number) if number is not None else None
            if size:
                self.known_size[number] = size  # the guest is sized from it: last size seen
                ref = DiskRef(work.guest, target, source)
                self._grow(dom, ref, size, time.monotonic(), capacities.get(target))


def guest_capacities(conn: libvirt.virConnect, dom: libvirt.virDomain) -> dict[str, int]:
    """Target dev -> the size the running guest sees, for each of its disks (one call)."""
    found = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_BLOCK)
    stats = found[0][1] if found else {}
    capacities = {}
    for i in range(stats.get("block.count", 0)):
        name, capacity = stats.get(f"block.{i}.name"), stats.get(f"block.{i}.capacity")
        if name and capacity is not None:
            capacities[name] = capacity
    return capacities
