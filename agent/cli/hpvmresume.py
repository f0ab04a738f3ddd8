"""`hpvmresume -P name`: a guest suspended by hpvmsuspend runs on where it stopped."""

from __future__ import annotations

import sys
import time

import libvirt

from agent import vswitch_store
from agent.cli.common import EXIT_OK, connect, guest_locked, run, simple_parser
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.inventory import config_guest, lookup

PROG = "hpvmresume"


def resume(argv: list[str]) -> int:
    options = simple_parser(PROG, "Resume a suspended guest.").parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if dom.isActive():
        raise HostError(f"guest '{options.name}' is running, not suspended")
    if not dom.hasManagedSaveImage(0):
        raise HostError(f"guest '{options.name}' is not suspended (use hpvmstart)")
    start = time.monotonic()
    nics = config_guest(dom).networks
    on_vswitches = vswitch_store.managed(conn, nics)
    try:
        if not on_vswitches:
            dom.create()
        else:
            from agent import vswitches  # pyroute2 only for guests on hpvmnet vswitches

            vswitches.prepare_guest(conn, nics)
            # Restored paused until every port has its VLAN rule, as hpvmstart does.
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
            try:
                vswitches.apply_guest(conn, dom)
            except HostError:
                dom.managedSave(0)  # back to disk: the guest's state is never lost
                raise
            dom.resume()
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    print(f"{PROG}: Guest '{options.name}' resumed ({time.monotonic() - start:.1f} s)")
    return EXIT_OK


COMMAND = guest_locked(resume)


def main() -> None:
    sys.exit(run(PROG, COMMAND))
