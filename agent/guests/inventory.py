"""What libvirt knows: the guests (from their domain XML) and what they claim."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import libvirt

from agent.network.vswitch_store import all_vswitches
from agent.stale import StaleNames
from agent.storage.hostcheck import backing_key
from translators.devices.dio import DioDevice
from translators.devices.scsi_passthrough import ScsiPassthroughDevice
from translators.errors import HpvmError
from translators.model import Guest, NetworkDevice, StorageType
from translators.readback import read_domain
from translators.validate import HostClaims
from translators.vswitch import VSwitch

STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "On (OS)",
    libvirt.VIR_DOMAIN_BLOCKED: "On (OS)",
    libvirt.VIR_DOMAIN_PAUSED: "On (Paused)",
    libvirt.VIR_DOMAIN_SHUTDOWN: "Stopping",
    libvirt.VIR_DOMAIN_SHUTOFF: "Off",
    libvirt.VIR_DOMAIN_CRASHED: "Crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "Suspended",
}


@dataclass
class Entry:
    """One guest as libvirt has it."""

    dom: libvirt.virDomain
    guest: Guest  # the persistent configuration
    active: bool

    @property
    def state(self) -> str:
        return state_of(self.dom)

    @functools.cached_property
    def live_xml(self) -> str:
        """The running domain's XML, read once."""
        return self.dom.XMLDesc(0)

    @property
    def current(self) -> Guest:
        """The guest as it runs (its configuration when it does not)."""
        return read_domain(self.live_xml) if self.active else self.guest


def state_of(dom: libvirt.virDomain) -> str:
    """The guest's state as hpvmstatus prints it."""
    state = dom.state()[0]
    if state == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0):
        return "Suspended"  # hpvmsuspend: its memory is on disk
    return STATES.get(state, "Unknown")


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    """The domain called `name`, or an input error naming it."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        raise HpvmError(f"no guest named '{name}'") from None


def not_runnable(dom: libvirt.virDomain) -> str | None:
    """Why the guest may not start here (migrated away by hpvmmigrate without -D), or None."""
    from translators.migration import NS, not_runnable_reason

    try:
        element = dom.metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG
        )
    except libvirt.libvirtError:  # none
        return None
    return not_runnable_reason(element)


def config_guest(dom: libvirt.virDomain) -> Guest:
    """The persistent configuration of a domain as a model."""
    return read_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def entries(conn: libvirt.virConnect) -> list[Entry]:
    """Every persistent guest, ordered by VM number then name."""
    found = []
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT):
        try:
            found.append(Entry(dom, config_guest(dom), bool(dom.isActive())))
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise  # undefined while we listed: not a guest any more

    return sorted(found, key=by_number)


def by_number(entry: Entry) -> tuple[bool, int, str]:
    """Sort key: VM number, then name (guests without a number last)."""
    return (entry.guest.number is None, entry.guest.number or 0, entry.guest.name)


def host_macs() -> dict[str, str]:
    macs = {}
    for iface in Path("/sys/class/net").iterdir():
        try:
            macs[(iface / "address").read_text().strip().lower()] = f"host interface {iface.name}"
        except OSError:
            pass
    return macs


class HostView:
    """What one command (or agent event) sees of a host: its guests and vswitches.

    Each part is read from libvirt once, when first asked for, and then kept:
    a change made through libvirt meanwhile shows in a new view only.
    """

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn

    @functools.cached_property
    def entries(self) -> list[Entry]:
        """Every persistent guest, ordered by VM number then name."""
        return entries(self.conn)

    @functools.cached_property
    def vswitches(self) -> list[VSwitch]:
        """Every vswitch (hpvmnet), in number order."""
        return all_vswitches(self.conn)

    def vswitch(self, name: str) -> VSwitch | None:
        return next((v for v in self.vswitches if v.name == name), None)

    def existing_vswitch(self, name: str) -> VSwitch:
        """The vswitch called `name`, or an input error naming it."""
        v = self.vswitch(name)
        if v is None:
            raise HpvmError(f"no vswitch named '{name}'")
        return v

    def on_vswitches(self, nics: list[NetworkDevice]) -> bool:
        """Is any of these NICs on a vswitch defined with hpvmnet?"""
        names = {v.name for v in self.vswitches}
        return any(nic.vswitch in names for nic in nics)

    def claims(self, exclude: str | None = None) -> HostClaims:
        """MACs, backing stores and vswitch ports used by other guests and the host."""
        from agent.devices.database import shared_keys

        claims = HostClaims(macs=host_macs(), key=backing_key, shared=shared_keys())
        return self.guests_claims(claims, exclude)

    def guests_claims(self, result: HostClaims, exclude: str | None = None) -> HostClaims:
        """`result` with what the guests (but `exclude`) use added, keyed by its key."""
        # vswitches with no uplink (like HPVM's localnet) take VIO lan only
        result.local_vswitches = {v.name for v in self.vswitches if not v.uplink}
        for entry in self.entries:
            guest = entry.guest
            if guest.name == exclude:
                continue
            for dev in guest.storage:
                if dev.storage is not StorageType.NULL:
                    result.add_backing(result.key(dev.location), guest.name, dev.adapter)
            for dio in guest.of_kind(DioDevice):
                assert isinstance(dio, DioDevice)
                if dio.function:
                    result.functions[dio.function] = guest.name
                if dio.mac:
                    result.macs[dio.mac] = f"guest {guest.name}"
            if guest.of_kind(ScsiPassthroughDevice):
                from agent.devices import scsi

                scsi.add_claims(result, guest)
            for nic in guest.networks:
                if nic.mac:
                    result.macs[nic.mac] = f"guest {guest.name}"
                if nic.portid is not None:
                    result.ports.setdefault(nic.vswitch, {})[nic.portid] = guest.name
        return result

    def next_number(self) -> int:
        """The lowest VM number no guest has."""
        used = {e.guest.number for e in self.entries}
        return next(n for n in range(1, len(used) + 2) if n not in used)


class GuestCache:
    """Every persistent guest, kept by a long-running process (the agent) and read again
    one guest at a time: only guests said to have changed (`invalidate(name)`, e.g. on
    libvirt's events) are read from libvirt again, so a check against all guests costs
    the same with 10 or 1,000 of them. `invalidate()` reads everything again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the entries: workers check against them side by side
        self._entries: dict[str, Entry] = {}
        self._stale = StaleNames()
        self.reads = 0  # guests read from libvirt (for tests and benchmarks)

    def invalidate(self, name: str | None = None) -> None:
        self._stale.mark(name)

    def entries(self, conn: libvirt.virConnect) -> list[Entry]:
        """Every persistent guest, ordered by VM number then name (stale ones read again)."""
        with self._lock:
            everything, stale = self._stale.take()
            if everything:  # the listing reads the stale ones too
                found = entries(conn)
                self.reads += len(found)
                self._entries = {e.guest.name: e for e in found}
            else:
                for name in stale:
                    self._read(conn, name)
            found = list(self._entries.values())
        return sorted(found, key=by_number)

    def _read(self, conn: libvirt.virConnect, name: str) -> None:
        self.reads += 1
        self._entries.pop(name, None)
        try:
            dom = conn.lookupByName(name)
            if dom.isPersistent():
                self._entries[name] = Entry(dom, config_guest(dom), bool(dom.isActive()))
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                self._stale.mark(name)  # read again next time
                raise


class CachedHostView(HostView):
    """A HostView whose guests come from a GuestCache (the agent's), not a full listing."""

    def __init__(self, conn: libvirt.virConnect, cache: GuestCache) -> None:
        super().__init__(conn)
        self._cache = cache

    @property
    def entries(self) -> list[Entry]:  # type: ignore[override]
        return self._cache.entries(self.conn)
