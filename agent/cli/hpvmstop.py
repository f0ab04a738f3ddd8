"""`hpvmstop -P name [-g | -F]`: stop a guest, gracefully (default) or forced."""

from __future__ import annotations

import time

import libvirt

from agent.cli.common import EXIT_OK, connect, entry_point
from agent.cli.options import command_parser
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.guests.inventory import lookup

PROG = "hpvmstop"


def stop(argv: list[str]) -> int:
    parser = command_parser(PROG, "Stop a guest.")
    parser.add_argument(
        "-g", dest="graceful", action="store_true", help="graceful shutdown (the default)"
    )
    parser.add_argument(
        "-F", dest="force", action="store_true", help="forced power-off, like pulling the plug"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for a graceful stop (default 60)",
    )
    options = parser.parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if not dom.isActive():
        raise HostError(f"guest '{options.name}' is not running")
    try:
        if options.force and not options.graceful:
            dom.destroy()
        else:
            dom.shutdown()
            deadline = time.monotonic() + options.timeout
            while dom.isActive():
                if time.monotonic() > deadline:
                    raise HostError(
                        f"guest '{options.name}' did not stop within {options.timeout:.0f} s "
                        "(use -F to force it off)"
                    )
                time.sleep(0.2)
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    return EXIT_OK


COMMAND = stop

main = entry_point(PROG, COMMAND)
