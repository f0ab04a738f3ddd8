"""`hpvmsuspend -P name`: a running guest's memory and devices to disk (hpvmresume: back).

libvirt's managed save: the guest stops running, its RAM and device state are
written under /var/lib/libvirt/qemu/save, and the next start (hpvmresume, or
hpvmstart) resumes it where it stopped, uptime and all.
"""

from __future__ import annotations

import time

import libvirt

from agent.cli.common import EXIT_OK, connect, entry_point, guest_locked
from agent.cli.options import command_parser
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.guests.inventory import lookup

PROG = "hpvmsuspend"


def suspend(argv: list[str]) -> int:
    options = command_parser(PROG, "Suspend a running guest to disk.").parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if not dom.isActive():
        raise HostError(f"guest '{options.name}' is not running")
    start = time.monotonic()
    try:
        dom.managedSave(0)
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    print(
        f"{PROG}: Guest '{options.name}' suspended "
        f"({time.monotonic() - start:.1f} s); hpvmresume -P {options.name} resumes it"
    )
    return EXIT_OK


COMMAND = guest_locked(suspend)

main = entry_point(PROG, COMMAND)
