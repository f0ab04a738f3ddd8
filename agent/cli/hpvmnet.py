"""`hpvmnet`: vswitches (Linux bridges) with an optional host uplink and per-port VLANs."""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import EXIT_OK, connect, entry_point
from agent.cli.options import add_flags, command_parser
from agent.guests.inventory import HostView
from agent.network import netlink, vswitches
from translators.errors import HpvmError
from translators.vswitch import VSwitch, check_name, format_ports, format_switches, parse_port_vlan

PROG = "hpvmnet"


def parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, "Manage vswitches.", None, short_help=False)
    p.add_argument("-S", dest="name", help="the vswitch")
    action = p.add_mutually_exclusive_group()
    add_flags(
        action,
        ("-c", "create", "create"),
        ("-b", "boot", "start (boot)"),
        ("-h", "halt", "halt"),
        ("-d", "delete", "delete"),
    )
    action.add_argument(
        "-u", dest="port_vlan", metavar="portid:N:vlanid:M", help="set a port's VLAN (M, or none)"
    )
    p.add_argument(
        "-n",
        dest="uplink",
        metavar="IFACE",
        help="with -c: the host interface to use as uplink (HPVM's PPA)",
    )
    force = (
        "halt/delete even while running guests use it; create/start with an uplink "
        "that carries host addresses or routes"
    )
    add_flags(p, ("-F", "force", force))
    return p


def _check_uplink(name: str, uplink: str) -> None:
    if uplink == name:
        raise HpvmError(f"uplink {uplink} cannot be the vswitch itself")
    if not netlink.exists(uplink):
        raise HpvmError(f"uplink {uplink} is not a host interface")
    if netlink.is_bridge(uplink):
        raise HpvmError(f"uplink {uplink} is a bridge (vswitches do not nest)")
    master = netlink.master_of(uplink)
    if master is not None:
        raise HpvmError(f"uplink {uplink} is already a port of {master}")


def check_host_traffic(uplink: str) -> None:
    """An uplink the host itself talks through (addresses, routes) would cut the host off."""
    addresses, routes = netlink.host_traffic(uplink)
    if not addresses and not routes:
        return
    what = []
    if addresses:
        what.append(f"addresses {', '.join(addresses)}")
    if routes:
        what.append(f"routes {', '.join(routes)}")
    raise HpvmError(
        f"uplink {uplink} carries the host's {' and '.join(what)}: as a vswitch port it "
        "would cut the host off them (move them off it first, or use -F)"
    )


def create(host: HostView, name: str, uplink: str | None, force: bool = False) -> None:
    check_name(name)
    existing = host.vswitches
    if any(v.name == name for v in existing):
        raise HpvmError(f"vswitch '{name}' already exists")
    if netlink.exists(name) and not netlink.is_bridge(name):
        raise HpvmError(f"'{name}' is a host interface that is not a bridge")
    if uplink:
        _check_uplink(name, uplink)
        if not force:
            check_host_traffic(uplink)
    used = {v.number for v in existing}
    number = next(n for n in range(1, len(used) + 2) if n not in used)
    vswitches.save(host.conn, VSwitch(name, number, uplink))


def _refuse_if_busy(host: HostView, name: str, force: bool, doing: str) -> None:
    guests = vswitches.busy(host, name)
    if guests and not force:
        raise HpvmError(
            f"vswitch '{name}' is used by running guests {', '.join(guests)}; {doing} it with -F"
        )


def net(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    if options.uplink and not options.create:
        raise HpvmError("-n goes with -c")
    if not options.name:
        if options.create or options.boot or options.halt or options.delete or options.port_vlan:
            raise HpvmError("-S NAME is needed")
        host = HostView(connect(options.connect))
        rows = [vswitches.switch_row(v) for v in host.vswitches]
        sys.stdout.write(format_switches(rows))
        return EXIT_OK
    port_vlan = parse_port_vlan(options.port_vlan) if options.port_vlan else None
    host = HostView(connect(options.connect))
    conn = host.conn
    if options.create:
        create(host, options.name, options.uplink, options.force)
        return EXIT_OK
    v = host.existing_vswitch(options.name)
    if options.boot:
        if v.uplink and not options.force and netlink.master_of(v.uplink) != v.name:
            check_host_traffic(v.uplink)
        vswitches.start(host, v)
        v.up = True
        vswitches.save(conn, v)
    elif options.halt:
        _refuse_if_busy(host, v.name, options.force, "halt")
        netlink.set_down(v.name)
        v.up = False
        vswitches.save(conn, v)
    elif options.delete:
        _refuse_if_busy(host, v.name, options.force, "delete")
        if v.uplink:
            netlink.release(v.uplink)
        netlink.delete(v.name)
        vswitches.undefine(conn, v.name)
    elif port_vlan is not None:
        port, vlan = port_vlan
        if vlan is None:
            v.vlans.pop(port, None)
        else:
            v.vlans[port] = vlan
        vswitches.save(conn, v)
        vswitches.apply_vlans(host, v)
    else:
        sys.stdout.write(format_switches([vswitches.switch_row(v)]))
        sys.stdout.write("\n")
        sys.stdout.write(format_ports(vswitches.port_rows(host, v)))
    return EXIT_OK


COMMAND = net

main = entry_point(PROG, COMMAND)
