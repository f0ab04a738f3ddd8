"""vswitches on the host: bridges and uplinks (netlink), port VLAN rules (tc BPF).

Definitions are kept by libvirt (see `vswitch_store`).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from agent.errors import HostError
from agent.guests.inventory import HostView
from agent.network import netlink, portfilter
from agent.network.vswitch_store import all_vswitches, save, undefine
from translators.model import NetworkDevice
from translators.readback import interface_taps
from translators.vswitch import PortRow, SwitchRow, VSwitch, port_rules

__all__ = ["all_vswitches", "save", "undefine"]


@dataclass
class Port:
    """A guest NIC on a vswitch."""

    guest: str
    running: bool
    nic: NetworkDevice
    tap: str | None  # the host side of a running guest's NIC


def ports(host: HostView, name: str) -> list[Port]:
    """Every guest NIC on vswitch `name`, running or not."""
    found = []
    for entry in host.entries:
        guest = entry.current
        taps = interface_taps(entry.live_xml) if entry.active else {}
        for nic in guest.networks:
            if nic.vswitch == name:
                found.append(Port(guest.name, entry.active, nic, taps.get(nic.mac or "")))
    return found


def busy(host: HostView, name: str) -> list[str]:
    return sorted({p.guest for p in ports(host, name) if p.running})


def start(host: HostView, v: VSwitch) -> None:
    """Bridge up, uplink in, port VLAN rules applied (netlink only for what is missing:
    the agent's reconciliation of a host whose bridges are all there loads no pyroute2)."""
    if not netlink.bridge_ready(v.name):
        netlink.ensure_bridge(v.name)
    if v.uplink and netlink.port_of(v.uplink) != v.name:
        netlink.enslave(v.uplink, v.name)
    apply_vlans(host, v)


def apply_vlans(host: HostView, v: VSwitch) -> None:
    """Each running guest's tap gets its port's VLAN rule; the uplink carries all VLANs."""
    if not netlink.exists(v.name):
        return
    for port in ports(host, v.name):
        if port.tap:
            portfilter.ensure(port.tap, v.vlan_of(port.nic.portid))


def _tap_of(dom: libvirt.virDomain, nic: NetworkDevice) -> str | None:
    return interface_taps(dom.XMLDesc(0)).get((nic.mac or "").lower())


def apply_nic(host: HostView, dom: libvirt.virDomain, nic: NetworkDevice) -> None:
    """One NIC of a running guest gets its port's rule (`nic` as planned: port id known)."""
    v = host.vswitch(nic.vswitch)
    if v is None:
        return
    tap = _tap_of(dom, nic)
    if tap is None:
        raise HostError(f"the NIC {nic.mac} of guest '{dom.name()}' has no tap on the host")
    portfilter.apply(tap, v.vlan_of(nic.portid))


def release_nic(dom: libvirt.virDomain, nic: NetworkDevice) -> None:
    """A running guest's NIC left the hpvmnet vswitches: its tap keeps no port rule."""
    tap = _tap_of(dom, nic)
    if tap is not None:
        portfilter.remove(tap)


def prepare_guest(host: HostView, nics: list[NetworkDevice]) -> None:
    """Before a guest starts: every vswitch it uses that we manage has its bridge up."""
    for name in {nic.vswitch for nic in nics}:
        v = host.vswitch(name)
        if v is not None and not netlink.exists(v.name):
            start(host, v)


def apply_guest(host: HostView, dom: libvirt.virDomain) -> None:
    """A running guest's NICs on hpvmnet vswitches get their ports' rules (as the hook does)."""
    by_name = {v.name: v for v in host.vswitches}
    for rule in port_rules(dom.XMLDesc(0), by_name):
        portfilter.ensure(rule.tap, rule.vlan)


def switch_row(v: VSwitch) -> SwitchRow:
    state = "Up" if netlink.is_up(v.name) else "Down"
    mac = netlink.mac_of(v.uplink) if v.uplink else None
    ip = netlink.ipv4_of(v.uplink) if v.uplink else None
    return SwitchRow(v, state, mac, ip)


def port_rows(host: HostView, v: VSwitch) -> list[PortRow]:
    by_port: dict[int, list[Port]] = {}
    for port in ports(host, v.name):
        if port.nic.portid is not None:
            by_port.setdefault(port.nic.portid, []).append(port)
    rows = []
    for number in sorted(set(by_port) | set(v.vlans)):
        users = by_port.get(number, [])
        running = [p for p in users if p.running]
        state = "Active" if running else "Reserved" if users else "Inactive"
        adaptor = str(users[0].nic.adapter) if users else ""
        rows.append(
            PortRow(
                number,
                state,
                adaptor,
                v.vlans.get(number),
                len(users),
                running[0].guest if running else "",
            )
        )
    return rows
