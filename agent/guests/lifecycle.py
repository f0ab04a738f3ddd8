"""Guest operations shared by the commands and the agent: define, change devices."""

from __future__ import annotations

from collections.abc import Callable

import libvirt

from agent.connection import libvirt_message
from agent.devices import dio, scsi
from agent.errors import HostError
from agent.guests.apply import Applier
from agent.guests.inventory import HostView, config_guest
from agent.storage.backing import backing_size
from agent.storage.hostcheck import check_backing
from translators.allocate import complete
from translators.errors import HpvmError
from translators.model import Device, Guest
from translators.plan import Action, Change, plan_modify
from translators.render import NS, NS_PREFIX, metadata_element_xml, render_domain, to_string
from translators.validate import check_guest, check_sizes


def refuse_taken_name(conn: libvirt.virConnect, name: str) -> None:
    """Bad input when a guest of that name exists."""
    try:
        conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    raise HpvmError(f"guest '{name}' already exists")


def define_guest(
    conn: libvirt.virConnect, guest: Guest, virt_type: str, host: HostView | None = None
) -> libvirt.virDomain:
    """Check `guest` against the host (claims, backing stores) and define it in libvirt."""
    host = host or HostView(conn)
    refuse_taken_name(conn, guest.name)
    dio.resolve_guest(guest)  # only DIO pool members: their functions
    host_claims = host.claims()
    scsi.check_devices(guest.devices, host_claims)  # attached devices: their host facts
    check_guest(guest, host_claims)
    guest = complete(guest, host_claims)
    for dev in guest.storage:
        check_backing(dev)
    dio.prepare(guest.devices)
    check_sizes(guest, backing_size)
    guest.number = host.next_number()
    try:
        dom = conn.defineXML(to_string(render_domain(guest, virt_type)))
        dom.setAutostart(1 if guest.autoboot else 0)
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    return dom


def plan_devices(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    add: list[Device],
    delete: list[Device],
    change: list[Device],
    host: HostView | None = None,
) -> tuple[Guest, Guest, list[Change]]:
    """(before, after, changes) for a device change, checked against the host."""
    host = host or HostView(conn)
    before = config_guest(dom)
    dio.resolve([*add, *change])
    dio.resolve(delete, strict=False)
    claims = host.claims(exclude=before.name)
    scsi.check_devices([*add, *change], claims)  # attached devices: their host facts
    after, changes = plan_modify(before, add, delete, change, claims)
    for item in changes:
        if item.action is not Action.DETACH and item.device.HOST_BACKED:
            check_backing(item.device)  # type: ignore[arg-type]
    dio.prepare(c.device for c in changes if c.action is Action.ATTACH)
    return before, after, changes


def change_devices(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    add: list[Device],
    delete: list[Device],
    change: list[Device] | None = None,
    host: HostView | None = None,
) -> list[Change]:
    """Plan, check and apply a device change (live and persistent where it runs).

    The one path of `hpvmmodify` and the agent: the Applier, then the vswitch
    port rules of NICs plugged (before their link is up) or moved.
    """
    host = host or HostView(conn)
    _, after, changes = plan_devices(conn, dom, add, delete, change or [], host)
    if changes:
        Applier(conn, dom, port_rule(conn, dom, changes, host)).apply(changes, after)
        refresh_vlans(conn, dom, changes, host)
    return changes


def port_rule(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    changes: list[Change],
    host: HostView | None = None,
) -> Callable[[Device], None] | None:
    """For an Applier: sets a plugged NIC's port rule, when NICs go onto hpvmnet vswitches."""
    plugged = [c.device for c in changes if c.action is Action.ATTACH and c.device.ON_VSWITCH]
    host = host or HostView(conn)
    if not plugged or not dom.isActive() or not host.on_vswitches(plugged):
        return None
    from agent.network import vswitches  # netlink (pyroute2) only when needed

    return lambda nic: vswitches.apply_nic(host, dom, nic)


def refresh_vlans(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    changes: list[Change],
    host: HostView | None = None,
) -> None:
    """NICs moved on a running guest: their vswitch ports' rules.

    A NIC moved onto a bridge that is not an hpvmnet vswitch loses its rule.
    (A plugged NIC got its rule before its link came up: `port_rule`.)
    """
    moved = [c.device for c in changes if c.action is Action.UPDATE and c.device.ON_VSWITCH]
    if not moved or not dom.isActive():
        return
    host = host or HostView(conn)
    managed = {v.name for v in host.vswitches}
    off = [nic for nic in moved if nic.vswitch not in managed]
    from agent.network import vswitches  # netlink (pyroute2) only when needed

    if len(off) < len(moved):
        vswitches.apply_guest(host, dom)
    for nic in off:
        vswitches.release_nic(dom, nic)


def follow_moved(
    dom: libvirt.virDomain, moved: list[tuple[str, str]], guest: Guest, flags: int = 0
) -> None:
    """Definition (and `flags`): attached devices that came back at a new SCSI address
    (same identity) get it (`moved`: (old XML, new XML) of each); `guest` has their new
    facts, for the metadata."""
    if not moved:
        return
    config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    try:
        for old, new in moved:
            dom.detachDeviceFlags(old, config)
            dom.attachDeviceFlags(new, config)
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            metadata_element_xml(guest),
            NS_PREFIX,
            NS,
            config | flags,
        )
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None


def start_guest(
    conn: libvirt.virConnect, dom: libvirt.virDomain, host: HostView | None = None
) -> None:
    """Start a defined guest, or resume a suspended one (libvirt restores its saved state).

    Refused when the guest was migrated away or its storage is not safe to hand it
    now. On hpvmnet vswitches it starts paused until every port has its VLAN rule,
    so it never sends unfiltered; if a rule cannot be set, a fresh start is
    powered off and a resumed guest goes back to disk (its state is never lost).
    """
    from agent.guests.inventory import not_runnable
    from agent.storage import startcheck

    reason = not_runnable(dom)
    if reason:
        raise HostError(f"guest '{dom.name()}' is not runnable here: {reason}")
    host = host or HostView(conn)
    guest = config_guest(dom)
    nics = guest.networks
    startcheck.check_start(host, guest)  # storage as it is now (the hook checks virsh start)
    dio.prepare(guest.devices)  # DIO functions: pooled, present, on vfio-pci
    follow_moved(dom, startcheck.check_attached_start(host, guest), guest)
    saved = dom.hasManagedSaveImage(0)
    try:
        if not host.on_vswitches(nics):
            dom.create()
            return
        from agent.network import vswitches  # pyroute2 only for guests on hpvmnet vswitches

        vswitches.prepare_guest(host, nics)
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        try:
            vswitches.apply_guest(host, dom)
        except HostError:
            if saved:
                dom.managedSave(0)
            else:
                dom.destroy()
            raise
        dom.resume()
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
