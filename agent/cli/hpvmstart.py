"""`hpvmstart -P name`: start a guest."""

from __future__ import annotations

import libvirt

from agent.cli.common import EXIT_OK, connect, entry_point, guest_locked
from agent.cli.options import command_parser
from agent.errors import HostError
from agent.guests.inventory import lookup
from agent.guests.lifecycle import start_guest

PROG = "hpvmstart"


def stopped_guest(
    prog: str, description: str, argv: list[str], if_running: str
) -> tuple[libvirt.virConnect, libvirt.virDomain]:
    """The guest `-P` names, refused (`guest 'NAME' <if_running>`) when it runs."""
    options = command_parser(prog, description).parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if dom.isActive():
        raise HostError(f"guest '{options.name}' {if_running}")
    return conn, dom


def start(argv: list[str]) -> int:
    conn, dom = stopped_guest(PROG, "Start a guest.", argv, "is already running")
    start_guest(conn, dom)
    print(f"{PROG}: Successful start initiation of guest '{dom.name()}'")
    return EXIT_OK


COMMAND = guest_locked(start)

main = entry_point(PROG, COMMAND)
