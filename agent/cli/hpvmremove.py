"""`hpvmremove -P name [-F]`: remove a guest's definition; backing storage is never touched."""

from __future__ import annotations

import sys

import libvirt

from agent.cli.common import EXIT_OK, connect, guest_locked, run, simple_parser
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.inventory import lookup

PROG = "hpvmremove"
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def remove(argv: list[str]) -> int:
    parser = simple_parser(PROG, "Remove a guest (its storage is kept).")
    parser.add_argument(
        "-F",
        dest="force",
        action="store_true",
        help="also remove a running guest (it is powered off first)",
    )
    options = parser.parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    try:
        if dom.isActive():
            if not options.force:
                raise HostError(f"guest '{options.name}' is running (stop it, or use -F)")
            dom.destroy()
        dom.undefineFlags(UNDEFINE_FLAGS)
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    return EXIT_OK


COMMAND = guest_locked(remove)


def main() -> None:
    sys.exit(run(PROG, COMMAND))
