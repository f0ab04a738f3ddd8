"""`hpvmstart -P name`: start a guest."""

from __future__ import annotations

import sys

import libvirt

from agent import startcheck, vswitch_store
from agent.cli.common import EXIT_OK, connect, guest_locked, run, simple_parser
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.inventory import config_guest, lookup, not_runnable

PROG = "hpvmstart"


def start(argv: list[str]) -> int:
    options = simple_parser(PROG, "Start a guest.").parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if dom.isActive():
        raise HostError(f"guest '{options.name}' is already running")
    reason = not_runnable(dom)
    if reason:
        raise HostError(f"guest '{options.name}' is not runnable here: {reason}")
    nics = config_guest(dom).networks
    startcheck.check_start(conn, dom)  # storage as it is now (the hook checks virsh start)
    on_vswitches = vswitch_store.managed(conn, nics)
    if on_vswitches:  # netlink (pyroute2) is loaded only for guests on hpvmnet vswitches
        from agent import vswitches

        vswitches.prepare_guest(conn, nics)
    try:
        if not on_vswitches:
            dom.create()
        else:
            # Paused until every port has its VLAN rule: the guest never sends unfiltered.
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
            try:
                vswitches.apply_guest(conn, dom)
            except HostError:
                dom.destroy()
                raise
            dom.resume()
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    print(f"{PROG}: Successful start initiation of guest '{options.name}'")
    return EXIT_OK


COMMAND = guest_locked(start)


def main() -> None:
    sys.exit(run(PROG, COMMAND))
