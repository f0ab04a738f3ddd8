"""Which running guest disks sit on which host block device (by device number), and
which disks of their definitions are unplugged (waiting for their backing to return).

The index is read from libvirt one guest at a time: a guest's entry is read again
only when something of that guest changed (`invalidate(guest)`), so an event costs
the same with 1 or 100 running guests. Everything is read again after a
reconnect or a reconciliation (`invalidate()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from agent.daemon import metrics
from agent.stale import StaleNames
from agent.storage.hostcheck import device_number as devnum_of
from translators.live import block_disks, missing_block_disks


@dataclass(frozen=True)
class DiskRef:
    """One disk of one running guest, backed by a host block device."""

    guest: str
    target: str  # libvirt target dev, e.g. "sdd"
    source: str  # the path as the domain names it


@dataclass(frozen=True)
class GuestDisks:
    """What the index keeps of one running guest."""

    live: tuple[tuple[int, DiskRef], ...]  # (device number, disk) of its block disks
    missing: tuple[str, ...]  # sources of defined block disks that are not plugged


def read_guest(dom: libvirt.virDomain) -> GuestDisks | None:
    """A running guest's block disks and unplugged ones; None when it does not run."""
    try:
        if not dom.isActive():
            return None
        live_xml = dom.XMLDesc(0)
        persistent = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dom.isPersistent() else None
    except libvirt.libvirtError:
        return None  # stopped or undefined meanwhile
    name = dom.name()
    live = []
    for target, source in block_disks(live_xml):
        number = devnum_of(source)
        if number is not None:
            live.append((number, DiskRef(name, target, source)))
    missing = missing_block_disks(persistent, live_xml) if persistent else []
    return GuestDisks(tuple(live), tuple(d.source for d in missing))


ACTIVE = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE


class DiskIndex:
    """Device number -> the running guests' disks on it; refreshed per stale guest.

    `invalidate` may be called from any thread; `refs` and `waiting_for` from the
    agent's loop only (they read libvirt for the stale guests).
    """

    def __init__(self) -> None:
        self._stale = StaleNames()
        self._guests: dict[str, GuestDisks] = {}
        self._by_devnum: dict[int, list[DiskRef]] = {}
        self.reads = 0  # guests read from libvirt (for tests and benchmarks)

    def invalidate(self, guest: str | None = None) -> None:
        """`guest`'s disks (or, with None, every guest's) may have changed."""
        self._stale.mark(guest)

    def refs(self, conn: libvirt.virConnect, devnum: int) -> list[DiskRef]:
        """The running guests' disks on host device `devnum`."""
        self.refresh(conn)
        return list(self._by_devnum.get(devnum, ()))

    def waiting_for(self, conn: libvirt.virConnect, devnum: int) -> list[str]:
        """Running guests with an unplugged disk whose backing is device `devnum` now."""
        self.refresh(conn)
        return [
            name
            for name, disks in self._guests.items()
            if any(devnum_of(source) == devnum for source in disks.missing)
        ]

    def refresh(self, conn: libvirt.virConnect) -> None:
        """Read again what is stale (one listing of the running guests, then only the
        stale ones that run are read: many defined guests changing cost one call)."""
        everything, stale = self._stale.take()
        if not everything and not stale:
            return
        running = {dom.name(): dom for dom in conn.listAllDomains(ACTIVE)}
        if everything:
            self._guests = {}
            stale = set(running)
        for name in stale:
            dom = running.get(name)
            self._store(name, read_guest(dom) if dom is not None else None)
        self._rebuild()

    def _store(self, name: str, disks: GuestDisks | None) -> None:
        self.reads += 1
        if disks is None:
            self._guests.pop(name, None)
        else:
            self._guests[name] = disks

    def _rebuild(self) -> None:
        by_devnum: dict[int, list[DiskRef]] = {}
        for disks in self._guests.values():
            for number, ref in disks.live:
                by_devnum.setdefault(number, []).append(ref)
        self._by_devnum = by_devnum
        metrics.GUESTS.set(sum(1 for disks in self._guests.values() if disks.live))


def running_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The guest `name` if it exists and runs, else None."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    return dom if dom.isActive() else None
